/*
 * The header `cargo xtask codegen` hands to bindgen to make src/bindings.rs: ntddk.h (the
 * WDK's km/ntddk.h, or mingw-w64's ddk/ntddk.h: the include path chooses) at the Windows
 * version that declares MmSecureVirtualMemoryEx, then what mingw-w64 lacks.
 */
#ifndef MMSECURE_SYS_H
#define MMSECURE_SYS_H

/* Windows 10 1809: NTDDI_WIN10_RS5, the first version with MmSecureVirtualMemoryEx. Spelled as
   numbers because sdkddkver.h, which names them, is only included by ntddk.h itself. */
#define _WIN32_WINNT 0x0A00
#define NTDDI_VERSION 0x0A000006

#include <ntddk.h>
#include "mmsecure_ex.h"

#endif /* MMSECURE_SYS_H */
