//! A tour of mmsecure on the host backend: what a secure refuses, what it does not, and what the
//! driver sees at each step. Run with `cargo run --example tour`.

use mmsecure::host::{self, AccessMode, Process, PAGE_NOACCESS, PAGE_READONLY, PAGE_READWRITE};
use mmsecure::{Error, ProbeMode, SecureFlags, SecureRegion, UserSlice};

const PAGE: usize = host::PAGE_SIZE;

fn main() -> Result<(), Error> {
    println!("mmsecure tour: the kernel's secure semantics, modelled in this process\n");

    // Run first: the routine lookup caches only a routine it found.
    older_windows()?;
    host::set_windows_build(22631);

    let app = Process::new();
    let _in_app = app.attach();
    let buffer = app.allocate(2 * PAGE, PAGE_READWRITE).expect("allocate");
    app.write(buffer, b"SET volume=7\0").expect("user write");
    println!(
        "A user process (id {}) passes the driver an 8 KiB buffer at {buffer:p}.",
        app.id()
    );

    println!("\n1. The driver secures it read-write (MmSecureVirtualMemory).");
    let region = SecureRegion::new(buffer, 2 * PAGE, ProbeMode::ReadWrite)?;
    println!("   secured: {region:?}");
    step(
        "user makes it read-only",
        app.protect(buffer, PAGE, PAGE_READONLY, AccessMode::User)
            .map(|_| ()),
    );
    step("user frees it", app.free(buffer, AccessMode::User));
    step(
        "user makes it a guard page",
        app.protect(
            buffer,
            PAGE,
            PAGE_READWRITE | host::PAGE_GUARD,
            AccessMode::User,
        )
        .map(|_| ()),
    );

    println!("\n2. The driver copies the request in once, with a reader, and validates the copy.");
    let mut reader = region.reader();
    let mut verb = [0u8; 4];
    reader.read_slice(&mut verb)?;
    let mut rest = [0u8; 9];
    reader.read_slice(&mut rest)?;
    let text = core::str::from_utf8(&rest[..8]).unwrap_or("<not UTF-8>");
    println!(
        "   copied in: {:?} then {text:?}; {} bytes left in the reader",
        core::str::from_utf8(&verb).unwrap_or("?"),
        reader.len()
    );
    app.write(buffer, b"SET volume=9\0").expect("user write");
    println!("   the user rewrites the buffer meanwhile: securing never stopped that;");
    println!("   the driver acts on its copy, which still says {text:?}.");
    println!(
        "   double fetches so far (the model watches every read): {}",
        app.double_fetches().len()
    );
    let _again: [u8; 4] = region.read(0)?;
    println!(
        "   reading the verb again at offset 0 is one: {}",
        app.double_fetches()[0]
    );
    region.writer().write_slice(b"OK")?;
    println!("   copied out a reply with a writer.");
    let past = region.write_slice(2 * PAGE - 1, b"XY").unwrap_err();
    println!(
        "   a write past the end: {past} (NTSTATUS {:#010X})",
        past.to_ntstatus() as u32
    );

    println!("\n3. The driver drops the region (MmUnsecureVirtualMemory).");
    drop(region);
    step(
        "user makes it read-only",
        app.protect(buffer, PAGE, PAGE_READONLY, AccessMode::User)
            .map(|_| ()),
    );

    println!("\n3b. Read in the dispatch routine and answered at once: no secure, a UserSlice.");
    let mut reader = UserSlice::new(buffer, 64)?.reader();
    let mut command = [0u8; 32];
    let command = reader.read_cstr(&mut command)?;
    println!(
        "   probed and copied once under the guard: {:?} (secures standing: {})",
        String::from_utf8_lossy(command),
        app.secure_count()
    );
    drop(reader);
    let spare = app.allocate(PAGE, PAGE_READWRITE).expect("allocate");
    let spare_reader = UserSlice::new(spare, 8)?.reader();
    step(
        "user frees a buffer a slice reads",
        app.free(spare, AccessMode::User),
    );
    let mut spare_reader = spare_reader;
    match spare_reader.read::<u64>() {
        Ok(_) => println!("   the slice read freed memory (unexpected)"),
        Err(e) => println!("   the slice's next copy: {e} (caught, no crash)"),
    }

    println!(
        "\n4. Flags (MmSecureVirtualMemoryEx, found at run time: available = {}).",
        mmsecure::secure_ex_available()
    );
    let frozen =
        SecureRegion::with_flags(buffer, PAGE, ProbeMode::ReadOnly, SecureFlags::NO_CHANGE)?;
    step(
        "NO_CHANGE: user makes it read-write (a read-only secure alone allows this)",
        app.protect(buffer, PAGE, PAGE_READWRITE, AccessMode::User)
            .map(|_| ()),
    );
    match SecureRegion::with_flags(
        buffer.wrapping_add(PAGE),
        PAGE,
        ProbeMode::ReadOnly,
        SecureFlags::EXCLUSIVE,
    ) {
        Ok(_) => println!("   EXCLUSIVE beside another secure: secured (unexpected)"),
        Err(e) => println!("   EXCLUSIVE beside another secure on the allocation: {e}"),
    }
    drop(frozen);
    let alone = SecureRegion::with_flags(
        buffer.wrapping_add(PAGE),
        PAGE,
        ProbeMode::ReadOnly,
        SecureFlags::EXCLUSIVE,
    )?;
    println!("   EXCLUSIVE once the other secure is gone: secured");
    drop(alone);

    println!("\n5. Bad input is refused before the kernel is called:");
    for (what, address, len) in [
        ("null address", core::ptr::null::<u8>(), 16usize),
        ("zero length", buffer as *const u8, 0),
        ("address + length wraps", (usize::MAX - 7) as *const u8, 16),
        (
            "kernel address",
            0xFFFF_F780_0000_0000usize as *const u8,
            16,
        ),
    ] {
        let err = SecureRegion::new(address, len, ProbeMode::ReadOnly).unwrap_err();
        println!(
            "   {what:<24} -> {err} (NTSTATUS {:#010X})",
            err.to_ntstatus() as u32
        );
    }
    println!(
        "   {:<24} -> {}",
        "unknown raw probe mode",
        ProbeMode::from_raw(PAGE_NOACCESS).unwrap_err()
    );
    println!(
        "   {:<24} -> {}",
        "unknown raw flag bits",
        SecureFlags::from_raw(0x30).unwrap_err()
    );

    println!("\n6. Other code changes the context; the region checks it every time.");
    let own = app.allocate(PAGE, PAGE_READWRITE).expect("allocate");
    let guarded = SecureRegion::new(own, PAGE, ProbeMode::ReadWrite)?;
    {
        // As under a spin lock: user memory is pageable, so no copy at DISPATCH_LEVEL.
        let _spin_lock = host::raise_irql(mmsecure::sys::DISPATCH_LEVEL);
        let mut byte = [0u8; 1];
        println!(
            "   a copy at DISPATCH_LEVEL -> {}",
            guarded.read_slice(0, &mut byte).unwrap_err()
        );
    }
    let other = Process::new();
    let abandoned_before = mmsecure::abandoned_secures();
    {
        // As after KeStackAttachProcess to another process: copies are refused, and a drop
        // there does not call MmUnsecureVirtualMemory (the kernel would bug check, 0x1A).
        let _elsewhere = other.attach();
        let mut byte = [0u8; 1];
        println!(
            "   a copy while attached to process {} -> {}",
            other.id(),
            guarded.read_slice(0, &mut byte).unwrap_err()
        );
        drop(guarded);
    }
    println!(
        "   dropped there: not unsecured, left to the process's exit ({} abandoned, {} standing)",
        mmsecure::abandoned_secures() - abandoned_before,
        app.secure_count()
    );

    println!("\n7. The process exits while the driver still holds a region.");
    let late = SecureRegion::new(buffer, PAGE, ProbeMode::ReadOnly)?;
    app.exit();
    println!(
        "   exit dropped every secure of the process: {} left",
        app.secure_count()
    );
    drop(late);
    println!(
        "   the late drop did nothing, as in the kernel; the model recorded it: {:?}",
        app.misuses().last()
    );

    println!("\nmisuses recorded in this run: {}", host::misuses().len());
    Ok(())
}

/// Windows 10 1803 has no MmSecureVirtualMemoryEx.
fn older_windows() -> Result<(), Error> {
    host::set_windows_build(17134);
    let app = Process::new();
    let _in_app = app.attach();
    let buffer = app.allocate(PAGE, PAGE_READWRITE).expect("allocate");
    println!(
        "0. On Windows 10 1803 (build 17134), MmSecureVirtualMemoryEx is looked up and not found:"
    );
    let err = SecureRegion::with_flags(buffer, PAGE, ProbeMode::ReadOnly, SecureFlags::NO_CHANGE)
        .unwrap_err();
    println!("   with_flags(NO_CHANGE) -> {err}");
    let plain = SecureRegion::new(buffer, PAGE, ProbeMode::ReadOnly)?;
    println!("   new() still works there: {plain:?}\n");
    Ok(())
}

/// Prints what a user-mode operation got.
fn step(what: &str, result: Result<(), host::Status>) {
    match result {
        Ok(()) => println!("   {what}: allowed"),
        Err(status) => println!("   {what}: refused, {status}"),
    }
}
