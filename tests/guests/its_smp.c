/* ITS end to end on every CPU: bring-up, INT and doorbell LPIs taken as IRQs
   on the CPU their collection names, MOVI, the priority mask, INV and INVALL
   after config-table edits, priority order, MOVALL, a spinlock shared by all
   CPUs (exclusives), and SGIs.  Prints one line per check
   ("ok ..." or "FAIL ..."), then "done", then powers off. */
#include "guest.h"

#define LPI(n) (8192 + (n))
#define DEVICE 0

/* 64 events at up to 16 bytes each: a GICv4 ITS reports 16-byte ITEs (GITS_TYPER) */
static u64 itt[2 * 64] __attribute__((aligned(256)));
static volatile u32 ready;
static volatile u32 counter_lock, counter, counting_done;
#define INCREMENTS 2000
extern char _end[];

void secondary_main(u64 cpu)
{
    gic_cpu_init(cpu, 0xf0);
    gic_enable_sgi(cpu, 3, 0x80);
    lpi_enable_this_cpu(cpu);
    __asm__ volatile("msr daifclr, #2");
    __atomic_fetch_add(&ready, 1, __ATOMIC_SEQ_CST);
    for (int n = 0; n < INCREMENTS; n++) {          /* a shared counter under a spinlock */
        spin_lock(&counter_lock);
        u32 value = counter;
        counter = value + 1;
        spin_unlock(&counter_lock);
    }
    __atomic_fetch_add(&counting_done, 1, __ATOMIC_SEQ_CST);
    for (;;)
        __asm__ volatile("wfi");
}

static int got(u64 cpu, u32 intid, u32 since)
{
    for (u64 tries = 0; tries < 5000000; tries++)
        for (u32 i = since; i < irq_count[cpu] && i < LOG_SIZE; i++)
            if (irq_log[cpu][i] == intid)
                return 1;
    return 0;
}

int main(u64 dtb)
{
    int cpus = count_cpus();
    print("cpus ", cpus);
    check(dtb >= (u64)_end, "device tree above the image at ", dtb);
    check(platform_init(dtb) == 3 && its_base == 0x08080000UL,
          "ITS found in the device tree at ", its_base);

    its_bring_up();
    gic_enable_sgi(0, 3, 0x80);
    for (int cpu = 1; cpu < cpus; cpu++)
        check(psci(0xC4000003, (u64)cpu, (u64)secondary_start, (u64)cpu) == 0, "CPU_ON ", cpu);
    check(wait_for(&ready, (u32)cpus - 1), "secondaries ready: ", ready);

    for (int cpu = 0; cpu < cpus; cpu++)
        its_mapc(cpu, cpu);
    its_mapd(DEVICE, (u64)itt, 6);
    for (u32 n = 0; n < 64; n++)
        its_mapti(DEVICE, n, LPI(n), n % cpus);
    its_sync(0);
    __asm__ volatile("msr daifclr, #2");

    /* INT: event n goes to CPU n % cpus. */
    for (int cpu = 0; cpu < cpus; cpu++) {
        u32 since = irq_count[cpu];
        its_int(DEVICE, cpu);
        check(got(cpu, LPI(cpu), since), "INT taken on its CPU, LPI ", LPI(cpu));
    }
    /* The doorbell (GITS_TRANSLATER, DeviceID 0). */
    for (int cpu = 0; cpu < cpus; cpu++) {
        u32 event = cpus + cpu, target = event % cpus;
        u32 since = irq_count[target];
        its_doorbell(event);
        check(got(target, LPI(event), since), "doorbell taken on its CPU, LPI ", LPI(event));
    }
    /* MOVI: event 0 moves to the last CPU. */
    if (cpus > 1) {
        u32 since = irq_count[cpus - 1];
        its_movi(DEVICE, 0, cpus - 1);
        its_int(DEVICE, 0);
        check(got(cpus - 1, LPI(0), since), "MOVI then INT on CPU ", cpus - 1);
    }
    /* The priority mask: an LPI at 0xf0 is not taken with PMR 0xf0, then is
       once PMR is 0xff. */
    {
        u32 event = 2 * cpus;                              /* on CPU 0 */
        while (event % cpus)
            event++;
        lpi_config(LPI(event), 0xf0, 1);
        its_inv(DEVICE, event);
        u32 since = irq_count[0];
        its_int(DEVICE, event);
        for (volatile int spin = 0; spin < 100000; spin++)
            ;
        check(irq_count[0] == since, "masked by PMR, taken so far: ", irq_count[0] - since);
        SYSREG_WRITE(S3_0_C4_C6_0, 0xff);
        check(got(0, LPI(event), since), "taken after PMR 0xff, LPI ", LPI(event));
    }
    /* A disabled LPI stays pending and is taken after INV re-enables it. */
    {
        u32 event = 3 * cpus;
        lpi_config(LPI(event), 0xa0, 0);
        its_inv(DEVICE, event);
        u32 since = irq_count[0];
        its_int(DEVICE, event);
        for (volatile int spin = 0; spin < 100000; spin++)
            ;
        check(irq_count[0] == since, "disabled LPI not taken: ", irq_count[0] - since);
        lpi_config(LPI(event), 0xa0, 1);
        its_invall(0);
        check(got(0, LPI(event), since), "INVALL then taken, LPI ", LPI(event));
    }
    /* Priorities: with IRQs masked, two LPIs become pending on CPU 0 at
       0xa0 and 0x80; once unmasked the 0x80 one is taken first. */
    {
        u32 low = 4 * cpus, high = 5 * cpus;                /* both on CPU 0 */
        lpi_config(LPI(high), 0x80, 1);
        its_inv(DEVICE, high);
        __asm__ volatile("msr daifset, #2");
        u32 since = irq_count[0];
        its_int(DEVICE, low);
        its_int(DEVICE, high);
        its_sync(0);
        __asm__ volatile("msr daifclr, #2");
        check(got(0, LPI(low), since) && irq_log[0][since] == LPI(high)
              && irq_log[0][since + 1] == LPI(low), "higher priority first: LPI ", LPI(high));
    }
    /* MOVALL: LPIs pending on CPU 0 (held back by its priority mask) move to
       the last CPU, which takes them. */
    if (cpus > 1) {
        u32 first = 6 * cpus, second = 7 * cpus;            /* both on CPU 0 */
        SYSREG_WRITE(S3_0_C4_C6_0, 0);                      /* CPU 0 takes nothing */
        u32 since = irq_count[cpus - 1];
        its_int(DEVICE, first);
        its_int(DEVICE, second);
        its_movall(0, cpus - 1);
        its_sync(cpus - 1);
        check(got(cpus - 1, LPI(first), since) && got(cpus - 1, LPI(second), since),
              "MOVALL moved both to CPU ", cpus - 1);
        SYSREG_WRITE(S3_0_C4_C6_0, 0xff);
    }
    /* Exclusives across CPUs: every secondary added INCREMENTS under a spinlock. */
    check(wait_for(&counting_done, (u32)cpus - 1) && counter == (u32)(cpus - 1) * INCREMENTS,
          "spinlocked counter ", counter);
    /* SGIs from CPU 0 to every CPU. */
    for (int cpu = 0; cpu < cpus; cpu++) {
        u32 since = irq_count[cpu];
        send_sgi(cpu, 3);
        check(got(cpu, 3, since), "SGI 3 taken on CPU ", cpu);
    }
    print("failures ", failures);
    puts("done\n");
    system_off();
}
