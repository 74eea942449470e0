//! Compiles the migrations' up files into the binary: a backup replays the schema, and the
//! function must carry exactly the migrations it was built with.

use std::{env, fmt::Write, fs, path::PathBuf};

fn main() {
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("../../migrations");
    println!("cargo::rerun-if-changed={}", dir.display());
    let mut files: Vec<(String, PathBuf)> = fs::read_dir(&dir)
        .expect("the migrations folder")
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".up.sql")?.to_owned();
            Some((stem, entry.path()))
        })
        .collect();
    files.sort();
    let mut code = String::from("&[\n");
    for (stem, path) in files {
        let path = path.canonicalize().expect("a migration file");
        writeln!(code, "    ({stem:?}, include_str!({:?})),", path.display()).expect("write");
    }
    code.push_str("]\n");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets it")).join("migrations.rs");
    fs::write(out, code).expect("writing migrations.rs");
}
