//! `cargo xtask`: mmsecure's own tasks.
fn main() {
    eprintln!("no tasks yet");
    std::process::exit(2);
}
