//! Writes the OpenAPI document generated from the route declarations to `docs/openapi.json`.
//! Run it after changing a route: a test fails while the committed file differs.

fn main() -> std::io::Result<()> {
    let path = local::openapi_path();
    std::fs::write(&path, local::openapi_json())?;
    println!("wrote {}", path.display());
    Ok(())
}
