//! Embeds every file of `migrations/` into the binary, so the Lambda carries exactly the
//! migrations it was built with.

use std::{env, fmt::Write, fs, path::Path};

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = fs::read_dir(&dir)
        .expect("the migrations folder")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    names.sort();
    let mut code = String::from(
        "/// (file name, contents) of every migration file.\npub const FILES: &[(&str, &str)] = &[\n",
    );
    for name in &names {
        let path = dir.join(name).canonicalize().expect("migration path");
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(
            code,
            "    ({name:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .expect("write");
    }
    code.push_str("];\n");
    let out = Path::new(&env::var("OUT_DIR").expect("OUT_DIR")).join("migrations.rs");
    fs::write(out, code).expect("writing the embedded migrations");
}
