/*
 * What mingw-w64 10's ddk/ntddk.h lacks of the WDK's km/ntddk.h: MmSecureVirtualMemoryEx and
 * its four flags (Windows 10 1809, NTDDI_WIN10_RS5, and later). Declared as the WDK declares
 * them, minus the SAL annotations, which mingw-w64 does not define.
 *
 * Included after ntddk.h by mmsecure_sys.h; read only by `cargo xtask codegen`, never by a C
 * compiler building a driver.
 */
#ifndef MMSECURE_EX_H
#define MMSECURE_EX_H

#if (NTDDI_VERSION >= NTDDI_WIN10_RS5)

/*
 * The WDK's ntddk.h defines the four flags and declares MmSecureVirtualMemoryEx together, in
 * one NTDDI_WIN10_RS5 block: when MM_SECURE_EXCLUSIVE is defined, the routine is declared too,
 * and this header adds nothing.
 */
#ifndef MM_SECURE_EXCLUSIVE

#define MM_SECURE_EXCLUSIVE         0x1
#define MM_SECURE_NO_CHANGE         0x2
#define MM_SECURE_USER_MODE_ONLY    0x4
#define MM_SECURE_NO_INHERIT        0x8

NTKERNELAPI
HANDLE
NTAPI
MmSecureVirtualMemoryEx(
    PVOID Address,
    SIZE_T Size,
    ULONG ProbeMode,
    ULONG Flags);

#endif /* MM_SECURE_EXCLUSIVE */

#endif /* NTDDI_VERSION >= NTDDI_WIN10_RS5 */

#endif /* MMSECURE_EX_H */
