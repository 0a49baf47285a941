//! BURN_VERSION: the burn release Cargo.lock resolved, for the JSON line.

fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock = std::fs::read_to_string("Cargo.lock").expect("bench/burn/Cargo.lock");
    let version = lock
        .split("[[package]]")
        .find_map(|pkg| {
            let mut lines = pkg.lines().map(str::trim).filter(|l| !l.is_empty());
            (lines.next() == Some("name = \"burn\""))
                .then(|| {
                    lines
                        .next()?
                        .strip_prefix("version = \"")?
                        .strip_suffix('"')
                })
                .flatten()
        })
        .expect("burn in Cargo.lock");
    println!("cargo:rustc-env=BURN_VERSION={version}");
}
