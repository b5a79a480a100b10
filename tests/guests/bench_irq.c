/* Benchmark: 20 000 SGIs a CPU sends itself, each taken through ICC_IAR1 and
   ICC_EOIR1 before the next is sent; then power off. */
#include "guest.h"

#define ROUNDS 20000

void secondary_main(u64 cpu)
{
    for (;;)
        __asm__ volatile("wfi");
}

int main(u64 dtb)
{
    gic_distributor_init();
    gic_cpu_init(0, 0xf0);
    gic_enable_sgi(0, 1, 0x80);
    __asm__ volatile("msr daifclr, #2");
    for (u32 round = 0; round < ROUNDS; round++) {
        send_sgi(0, 1);
        while (irq_count[0] == round)
            ;
    }
    print("interrupts ", irq_count[0]);
    system_off();
}
