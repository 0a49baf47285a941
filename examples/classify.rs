//! Classify images with a checkpoint through the library API (no CLI):
//! `cargo run --release --example classify -- runs/lskbb/best.safetensors IMAGE...`

use lskbb::app::{block_on, request_gpu, Classifier, Error};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(checkpoint), images) = (args.next(), args) else {
        return Err("usage: classify CHECKPOINT IMAGE...".into());
    };
    let gpu = block_on(request_gpu())?;
    let model = Classifier::load(&gpu, checkpoint.as_ref())?;
    for path in images {
        let bytes = std::fs::read(&path).map_err(|e| format!("reading {path}: {e}"))?;
        match block_on(model.classify_bytes(&bytes)) {
            Ok(p) => {
                let top: Vec<String> = p
                    .top(3)
                    .iter()
                    .map(|(c, v)| format!("{c} {v:.3}"))
                    .collect();
                println!("{path}: {} ({})", p.class, top.join(", "));
            }
            Err(Error::BadImage(why)) => eprintln!("{path}: skipped, {why}"),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
