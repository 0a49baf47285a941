//! The buffer pool: freed tensors' buffers are reused by size class; in lean mode a miss takes
//! an idle buffer up to twice the size, else returns cached buffers (largest first) to the
//! driver when the request is 1 MiB or more; and what the autograd graph keeps alive. Exact
//! byte counts of the pool's bookkeeping, each test on a device of its own.

use lskbb::{AdapterChoice, Gpu, Tensor};

const MIB: usize = 1 << 20;

#[test]
fn pool_reuses_by_class_and_lean_mode_reuses_or_trims_the_cache() {
    let gpu = Gpu::new(&AdapterChoice::default()).expect("a GPU adapter");
    let make = |bytes: usize| Tensor::zeros(&gpu, &[bytes / 4]).unwrap();
    let held = || gpu.memory().0 as usize;
    drop(make(4 * MIB));
    // Same class again: reused, nothing new held.
    let a = make(4 * MIB);
    assert_eq!(held(), 4 * MIB);
    drop(a);
    drop(make(2 * MIB));
    drop(make(16 * MIB));
    assert_eq!(held(), 22 * MIB);
    // Not lean: only the exact class is reused, so 3 MiB is created beside idle 4 and 16 MiB.
    drop(make(3 * MIB));
    assert_eq!(held(), 25 * MIB);
    assert_eq!(gpu.memory_in_use().0, 0);

    gpu.set_lean_pool(true);
    // The smallest idle buffer up to twice the size: 3.5 MiB gets the 4 MiB buffer.
    let a = make(7 * MIB / 2);
    assert_eq!(
        (held(), gpu.memory_in_use().0 as usize),
        (25 * MIB, 4 * MIB)
    );
    // Nothing idle within 5-10 MiB and 21 MiB idle: the 16 MiB buffer goes back first.
    let b = Tensor::from_f32(&gpu, &vec![1.5; 5 * MIB / 4], &[5 * MIB / 4]).unwrap();
    assert_eq!(held(), 14 * MIB);
    assert_eq!(gpu.trims(), 1);
    assert!(b.to_f32().unwrap().iter().all(|&v| v == 1.5));
    // Too little idle (2 + 3 MiB) to pay for a 64 MiB miss: the cache stays.
    let c = make(64 * MIB);
    assert_eq!(held(), 78 * MIB);
    // A miss under 1 MiB never trims (no wait for the GPU): the buffer is created.
    let d = make(MIB / 2);
    assert_eq!((held(), gpu.trims()), (78 * MIB + MIB / 2, 1));
    drop((a, b, c, d));
    assert_eq!(gpu.memory_in_use().0, 0);
}

/// The autograd graph keeps no value alive by itself: after `c = relu(add(a, a))` with
/// `a = mul(x, x)` and the handles of a and the sum dropped, only x (saved by mul) and c
/// (saved by relu) stay; backward frees each op's saved tensors as it goes, leaving x, c
/// (still held here) and x's gradient.
#[test]
fn graph_keeps_only_saved_tensors_and_backward_frees_them() {
    use lskbb::ops::{elementwise as ew, reduce};
    use lskbb::{backward, Var};
    let gpu = Gpu::new(&AdapterChoice::default()).expect("a GPU adapter");
    let live = || gpu.memory_in_use().0 as usize;
    let x = Var::param(Tensor::from_f32(&gpu, &vec![0.5; MIB / 4], &[MIB / 4]).unwrap());
    let c = {
        let a = ew::mul(&x, &x).unwrap();
        ew::relu(&ew::add(&a, &a).unwrap()).unwrap()
    };
    assert_eq!(live(), 2 * MIB);
    let loss = reduce::sum(&c, &[0], true).unwrap();
    backward(&loss).unwrap();
    drop(loss);
    assert_eq!(live(), 3 * MIB);
    assert!(x
        .grad()
        .unwrap()
        .to_f32()
        .unwrap()
        .iter()
        .all(|&g| g == 2.0));
    drop(c);
    assert_eq!(live(), 2 * MIB);
}

/// Views (parameter blocks): a view shares its parent's memory both ways, holds the parent
/// in use after the parent's handle drops, takes no pool bytes of its own, and is refused
/// off the adapter's alignment or past the parent's end.
#[test]
fn views_share_their_buffer_and_keep_it_in_use() {
    let gpu = Gpu::new(&AdapterChoice::default()).expect("a GPU adapter");
    let align = (gpu.view_alignment() / 4) as usize;
    let parent = Tensor::zeros(&gpu, &[4 * align]).unwrap();
    let view = parent.view(align, &[2, 3]).unwrap();
    view.write_f32(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let all = parent.to_f32().unwrap();
    assert_eq!(&all[align..align + 6], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert!(all[..align]
        .iter()
        .chain(&all[align + 6..])
        .all(|&v| v == 0.0));
    // Cleared through the view: only its six elements.
    parent.write_f32(&vec![9.0; 4 * align]).unwrap();
    gpu.zero(view.buf());
    let all = parent.to_f32().unwrap();
    assert_eq!(all.iter().filter(|&&v| v == 0.0).count(), 6);
    assert_eq!(view.to_f32().unwrap(), vec![0.0; 6]);
    let held = gpu.memory_in_use().0;
    drop(parent);
    assert_eq!(
        gpu.memory_in_use().0,
        held,
        "the view keeps its parent in use"
    );
    let second = view.view(0, &[6]).unwrap();
    drop(view);
    assert_eq!(gpu.memory_in_use().0, held);
    drop(second);
    assert_eq!(gpu.memory_in_use().0, 0);
    let t = Tensor::zeros(&gpu, &[4 * align]).unwrap();
    assert!(t.view(3 * align, &[align + 1]).is_err(), "past the end");
    assert_eq!(t.view(1, &[2]).is_err(), align > 1, "off the alignment");
}
