fn main() {
    // Embedded migrations are read at compile time; new migration folders must trigger a build.
    println!("cargo:rerun-if-changed=migrations");
}
