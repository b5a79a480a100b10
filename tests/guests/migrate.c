/* Migration with LPIs pending on every CPU.  All CPUs keep IRQs masked while
   CPU 0 makes two LPIs pending on each (INT), then it prints "MIGRATE" and
   waits for a byte on the UART: the harness saves the machine, restores it
   (possibly into another ITS layout) and feeds a newline.  Then every CPU
   unmasks and must take exactly its two LPIs, and the ITS must still
   translate: an INT, a doorbell and a new MAPTI after the migration. */
#include "guest.h"

#define LPI(n) (8192 + (n))
#define DEVICE 0

/* 64 events at up to 16 bytes each: a GICv4 ITS reports 16-byte ITEs (GITS_TYPER) */
static u64 itt[2 * 64] __attribute__((aligned(256)));
static volatile u32 ready, go;

static int getchar(void)
{
    while (read32(UART_BASE + 0x18) & 0x10)            /* FR.RXFE */
        ;
    return (int)(read32(UART_BASE) & 0xff);
}

void secondary_main(u64 cpu)
{
    gic_cpu_init(cpu, 0xf0);
    lpi_enable_this_cpu(cpu);
    __atomic_fetch_add(&ready, 1, __ATOMIC_SEQ_CST);
    while (!go)
        ;
    __asm__ volatile("msr daifclr, #2");
    for (;;)
        __asm__ volatile("wfi");
}

static int has(u64 cpu, u32 intid)
{
    for (u32 i = 0; i < irq_count[cpu] && i < LOG_SIZE; i++)
        if (irq_log[cpu][i] == intid)
            return 1;
    return 0;
}

int main(u64 dtb)
{
    int cpus = count_cpus();
    print("cpus ", cpus);
    check(platform_init(dtb) == 3, "GIC and ITS found in the device tree, ITS at ", its_base);
    its_bring_up();
    for (int cpu = 1; cpu < cpus; cpu++)
        psci(0xC4000003, (u64)cpu, (u64)secondary_start, (u64)cpu);
    wait_for(&ready, (u32)cpus - 1);
    for (int cpu = 0; cpu < cpus; cpu++)
        its_mapc(cpu, cpu);
    its_mapd(DEVICE, (u64)itt, 6);
    for (int n = 0; n < 2 * cpus; n++)
        its_mapti(DEVICE, n, LPI(n), n % cpus);
    for (int n = 0; n < 2 * cpus; n++)
        its_int(DEVICE, n);                            /* pending, IRQs masked everywhere */
    its_sync(0);

    puts("MIGRATE\n");
    getchar();
    puts("resumed\n");

    go = 1;
    __asm__ volatile("msr daifclr, #2");
    for (int cpu = 0; cpu < cpus; cpu++) {
        wait_for(&irq_count[cpu], 2);
        check(irq_count[cpu] == 2 && has(cpu, LPI(cpu)) && has(cpu, LPI(cpu + cpus)),
              "both pending LPIs taken after the migration on CPU ", cpu);
    }
    for (int cpu = 0; cpu < cpus; cpu++) {
        u32 since = irq_count[cpu];
        its_int(DEVICE, cpu);
        wait_for(&irq_count[cpu], since + 1);
        check(irq_log[cpu][since] == LPI(cpu), "INT after the migration on CPU ", cpu);
    }
    {
        u32 since = irq_count[0];
        its_doorbell(0);
        wait_for(&irq_count[0], since + 1);
        check(irq_log[0][since] == LPI(0), "doorbell after the migration, LPI ", LPI(0));
        its_mapti(DEVICE, 40, LPI(40), 0);
        its_int(DEVICE, 40);
        wait_for(&irq_count[0], since + 2);
        check(irq_log[0][since + 1] == LPI(40), "new MAPTI after the migration, LPI ", LPI(40));
    }
    print("failures ", failures);
    puts("done\n");
    system_off();
}
