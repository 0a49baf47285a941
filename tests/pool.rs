//! The buffer pool: freed tensors' buffers are reused by size class, and in lean mode a miss
//! first returns cached buffers of other classes (largest first) to the driver. Exact byte
//! counts of the pool's bookkeeping, on a device of its own.

use lskbb::{AdapterChoice, Gpu, Tensor};

#[test]
fn pool_reuses_by_class_and_lean_mode_trims_the_cache() {
    let gpu = Gpu::new(&AdapterChoice::default()).expect("a GPU adapter");
    let f32s = |bytes: usize| bytes / 4;
    let t = Tensor::zeros(&gpu, &[f32s(4096)]).unwrap();
    drop(t);
    // Same class again: reused, nothing new held.
    let t = Tensor::zeros(&gpu, &[f32s(4096)]).unwrap();
    assert_eq!(gpu.memory().0, 4096);
    drop(t);
    drop(Tensor::zeros(&gpu, &[f32s(8192)]).unwrap());
    drop(Tensor::zeros(&gpu, &[f32s(16384)]).unwrap());
    assert_eq!(gpu.memory().0, 4096 + 8192 + 16384);
    assert_eq!(gpu.memory_in_use().0, 0);
    gpu.set_lean_pool(true);
    // A miss for 12 KiB with 28 KiB cached: the 16 KiB buffer goes back first.
    let t = Tensor::from_f32(&gpu, &vec![1.5; f32s(12288)], &[f32s(12288)]).unwrap();
    assert_eq!(gpu.memory().0, 4096 + 8192 + 12288);
    assert_eq!(gpu.memory_in_use().0, 12288);
    assert!(t.to_f32().unwrap().iter().all(|&v| v == 1.5));
    // Nothing cached is big enough to pay for a 64 KiB miss: the cache stays.
    let u = Tensor::zeros(&gpu, &[f32s(65536)]).unwrap();
    assert_eq!(gpu.memory().0, 4096 + 8192 + 12288 + 65536);
    drop((t, u));
    assert_eq!(gpu.memory_in_use().0, 0);
}
