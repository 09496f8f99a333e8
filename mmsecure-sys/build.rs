//! Links the kernel routines on Windows targets; off Windows the host backend defines them.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_WINDOWS").is_ok() {
        // `-l ntoskrnl` finds the WDK's `ntoskrnl.lib` (MSVC link) and mingw-w64's
        // `libntoskrnl.a` (GNU ld, rust-lld) alike.
        println!("cargo:rustc-link-lib=ntoskrnl");
    }
}
