/* A hostile guest: writes all-ones and a pattern to every 32-bit word of the
   ITS, distributor and redistributor frames and to unmapped addresses, fills
   its command queue with garbage and rings the doorbell; then reads every
   word back.  The machine must survive and report; the guest prints
   "survived" and powers off. */
#include "guest.h"

static u64 garbage_queue[512] __attribute__((aligned(65536)));

static void hammer(u64 base, u64 bytes, u32 value)
{
    for (u64 offset = 0; offset < bytes; offset += 4)
        if (!(base == UART_BASE))
            write32(base + offset, value ^ (u32)offset);
}

int main(u64 dtb)
{
    for (u32 n = 0; n < 512; n++)
        garbage_queue[n] = 0x9e3779b97f4a7c15ul * (n + 1);
    /* A queue full of garbage, the ITS enabled on garbage tables. */
    write64(ITS_BASE + 0x80, (1ul << 63) | (u64)garbage_queue | 15);
    write64(ITS_BASE + 0x100, (1ul << 63) | 0x48000000ul | 0xff);
    write64(ITS_BASE + 0x108, (1ul << 63) | 0x48100000ul | 0xff);
    write32(ITS_BASE + 0x0, 1);
    write64(ITS_BASE + 0x88, 0xffe0);
    for (u32 event = 0; event < 64; event++)
        write32(ITS_BASE + 0x10040, event);
    hammer(ITS_BASE, 0x20000, 0xffffffff);
    hammer(ITS_BASE, 0x20000, 0x5a5a5a5a);
    hammer(GICD_BASE, 0x10000, 0xffffffff);
    hammer(GICR_BASE, 2 * GICR_STRIDE, 0xffffffff);
    hammer(0x10000000ul, 0x1000, 0x12345678);          /* nothing is mapped there */
    u64 sum = 0;
    for (u64 offset = 0; offset < 0x20000; offset += 4)
        sum += read32(ITS_BASE + offset) + read32(GICR_BASE + offset);
    sum += read32(0x10000000ul);
    __asm__ volatile("msr daifset, #2");               /* whatever became pending stays */
    print("checksum ", sum);
    puts("survived\n");
    system_off();
}

void secondary_main(u64 cpu)
{
    for (;;)
        __asm__ volatile("wfi");
}
