/* The guest's environment as a harness gives it: /chosen's bootargs and the
   initrd QEMU's -initrd loads (its address from linux,initrd-start/end).
   Prints both, the initrd as text, then powers off. */
#include "guest.h"

extern char _end[];

static u64 cells(const u8 *value, u32 length)
{
    u64 result = 0;
    for (u32 i = 0; i < length; i++)
        result = (result << 8) | value[i];
    return result;
}

void secondary_main(u64 cpu)
{
    for (;;)
        __asm__ volatile("wfi");
}

int main(u64 dtb)
{
    u32 length = 0;
    const u8 *bootargs = fdt_property(dtb, "chosen", "bootargs", &length);
    puts("bootargs: ");
    puts(bootargs ? (const char *)bootargs : "(none)");
    newline();
    const u8 *start = fdt_property(dtb, "chosen", "linux,initrd-start", &length);
    u64 first = start ? cells(start, length) : 0;
    const u8 *end = fdt_property(dtb, "chosen", "linux,initrd-end", &length);
    u64 last = end ? cells(end, length) : 0;
    print("initrd start ", first);
    print("initrd end ", last);
    print("device tree above the initrd: ", dtb >= last && last > (u64)_end);
    puts("initrd: ");
    for (u64 at = first; at < last; at++)
        putc(*(volatile u8 *)at);
    newline();
    system_off();
}
