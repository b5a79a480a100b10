/* The C test guests' runtime (see guest.h). */
#include "guest.h"

#define ICC_SRE_EL1 S3_0_C12_C12_5
#define ICC_PMR_EL1 S3_0_C4_C6_0
#define ICC_IGRPEN1_EL1 S3_0_C12_C12_7
#define ICC_IAR1_EL1 S3_0_C12_C12_0
#define ICC_EOIR1_EL1 S3_0_C12_C12_1
#define ICC_SGI1R_EL1 S3_0_C12_C11_5
#define ICC_BPR1_EL1 S3_0_C12_C12_3

u64 gicd_base = 0x08000000UL, its_base = 0x08080000UL, gicr_base = 0x080A0000UL;
u64 gicr_stride = 0x20000UL;

int platform_init(u64 dtb)
{
    u64 gicd = fdt_reg(dtb, "arm,gic-v3", 0), gicr = fdt_reg(dtb, "arm,gic-v3", 1);
    u64 its = fdt_reg(dtb, "arm,gic-v3-its", 0);
    if (gicd)
        gicd_base = gicd;
    if (gicr)
        gicr_base = gicr;
    if (its)
        its_base = its;
    if (read64(gicr_base + 0x8) & (1 << 1))             /* GICR_TYPER.VLPIS */
        gicr_stride = 0x40000UL;
    return (gicd != 0) + (gicr != 0) + (its != 0);
}

volatile u32 irq_log[8][LOG_SIZE];
volatile u32 irq_count[8];

void putc(int c)
{
    while (read32(UART_BASE + 0x18) & 0x20)
        ;
    write32(UART_BASE, (u32)c);
}

static volatile u32 print_lock;

void puts(const char *text)
{
    while (*text)
        putc(*text++);
}

void puthex(u64 value)
{
    puts("0x");
    for (int shift = 60; shift >= 0; shift -= 4)
        putc("0123456789abcdef"[(value >> shift) & 0xf]);
}

void newline(void) { putc('\n'); }

void print(const char *text, u64 value)
{
    spin_lock(&print_lock);
    puts(text);
    puthex(value);
    newline();
    spin_unlock(&print_lock);
}

long psci(u64 function, u64 a1, u64 a2, u64 a3)
{
    register u64 x0 __asm__("x0") = function;
    register u64 x1 __asm__("x1") = a1;
    register u64 x2 __asm__("x2") = a2;
    register u64 x3 __asm__("x3") = a3;
    __asm__ volatile("hvc #0" : "+r"(x0) : "r"(x1), "r"(x2), "r"(x3) : "memory");
    return (long)x0;
}

void system_off(void)
{
    psci(0x84000008, 0, 0, 0);
    for (;;)
        __asm__ volatile("wfi");
}

u64 this_cpu(void) { return SYSREG_READ(MPIDR_EL1) & 0xff; }

void irq_handler(void)
{
    u64 cpu = this_cpu();
    u32 intid = (u32)SYSREG_READ(ICC_IAR1_EL1) & 0xffffff;
    if (intid >= 1020 && intid < 1024)
        return;
    u32 count = irq_count[cpu];
    if (count < LOG_SIZE)
        irq_log[cpu][count] = intid;
    irq_count[cpu] = count + 1;
    SYSREG_WRITE(ICC_EOIR1_EL1, intid);
}

void report_exception(u64 esr, u64 elr)
{
    puts("unexpected exception, ESR ");
    puthex(esr);
    puts(" ELR ");
    puthex(elr);
    newline();
}

void spin_lock(volatile u32 *lock)
{
    u32 busy;
    do {
        __asm__ volatile("ldaxr %w0, [%1]" : "=r"(busy) : "r"(lock) : "memory");
        if (busy)
            continue;
        __asm__ volatile("stxr %w0, %w2, [%1]" : "=&r"(busy) : "r"(lock), "r"(1) : "memory");
    } while (busy);
}

void spin_unlock(volatile u32 *lock) { __asm__ volatile("stlr wzr, [%0]" :: "r"(lock) : "memory"); }

int wait_for(volatile u32 *flag, u32 value)
{
    for (u64 tries = 0; tries < 20000000; tries++)
        if (*flag >= value)
            return 1;
    return 0;
}

/* -- GIC ------------------------------------------------------------------ */

void gic_distributor_init(void)
{
    write32(GICD_BASE + 0x0, (1 << 4) | (1 << 1));     /* ARE, EnableGrp1 */
    barrier();
}

void gic_cpu_init(u64 cpu, u32 priority_mask)
{
    u64 rd = GICR_BASE + cpu * GICR_STRIDE;
    write32(rd + 0x14, 0);                              /* GICR_WAKER: awake */
    while (read32(rd + 0x14) & (1 << 2))
        ;
    write32(SGI_BASE(cpu) + 0x80, 0xffffffff);          /* SGIs/PPIs: Group 1 */
    SYSREG_WRITE(ICC_SRE_EL1, SYSREG_READ(ICC_SRE_EL1) | 1);
    SYSREG_WRITE(ICC_BPR1_EL1, 0);
    SYSREG_WRITE(ICC_PMR_EL1, priority_mask);
    SYSREG_WRITE(ICC_IGRPEN1_EL1, 1);
    barrier();
}

void gic_enable_sgi(u64 cpu, u32 intid, u8 priority)
{
    volatile u8 *priorities = (volatile u8 *)(SGI_BASE(cpu) + 0x400);
    priorities[intid] = priority;
    write32(SGI_BASE(cpu) + 0x100, 1u << intid);
    barrier();
}

void send_sgi(u64 target_cpu, u32 intid)
{
    barrier();
    SYSREG_WRITE(ICC_SGI1R_EL1, ((u64)intid << 24) | (1u << (target_cpu & 0xf)));
}

/* -- LPIs and the ITS ----------------------------------------------------------- */

static u64 prop_table;
static u64 its_queue;
static u32 its_write_offset;

void lpi_init_tables(u64 table, u32 id_bits)
{
    prop_table = table;
    /* GICR_PROPBASER is shared by every redistributor here: write it via CPU 0's. */
    write64(GICR_BASE + 0x70, table | (id_bits - 1));
}

void lpi_cpu_enable(u64 cpu, u64 pend_table)
{
    u64 rd = GICR_BASE + cpu * GICR_STRIDE;
    write64(rd + 0x70, read64(GICR_BASE + 0x70));
    write64(rd + 0x78, pend_table);
    barrier();
    write32(rd + 0x0, 1);                               /* EnableLPIs */
    barrier();
}

void lpi_config(u32 intid, u8 priority, int enable)
{
    volatile u8 *config = (volatile u8 *)prop_table;
    config[intid - 8192] = (u8)(priority | (1 << 1) | (enable ? 1 : 0));
    barrier();
}

void its_init(u64 device_table, u64 collection_table, u64 queue)
{
    its_queue = queue;
    write64(ITS_BASE + 0x100, (1ul << 63) | (1ul << 56) | device_table);       /* BASER0 */
    write64(ITS_BASE + 0x108, (1ul << 63) | (4ul << 56) | collection_table);   /* BASER1 */
    write64(ITS_BASE + 0x80, (1ul << 63) | queue);      /* CBASER: one 4 KiB page */
    write64(ITS_BASE + 0x88, 0);
    its_write_offset = 0;
    barrier();
    write32(ITS_BASE + 0x0, 1);                         /* GITS_CTLR.Enabled */
    barrier();
}

void its_command(u64 dw0, u64 dw1, u64 dw2, u64 dw3)
{
    volatile u64 *slot = (volatile u64 *)(its_queue + its_write_offset);
    slot[0] = dw0;
    slot[1] = dw1;
    slot[2] = dw2;
    slot[3] = dw3;
    its_write_offset = (its_write_offset + 32) % 4096;
    barrier();
    write64(ITS_BASE + 0x88, its_write_offset);        /* CWRITER */
    while (read64(ITS_BASE + 0x90) != its_write_offset) /* CREADR */
        ;
}

void its_mapd(u32 device, u64 itt, u32 event_bits)
{
    its_command(0x08 | ((u64)device << 32), event_bits - 1, (1ul << 63) | itt, 0);
}

void its_mapc(u32 icid, u32 target)
{
    its_command(0x09, 0, (1ul << 63) | ((u64)target << 16) | icid, 0);
}

void its_mapti(u32 device, u32 event, u32 intid, u32 icid)
{
    its_command(0x0a | ((u64)device << 32), event | ((u64)intid << 32), icid, 0);
}

void its_int(u32 device, u32 event) { its_command(0x03 | ((u64)device << 32), event, 0, 0); }

void its_movi(u32 device, u32 event, u32 icid)
{
    its_command(0x01 | ((u64)device << 32), event, icid, 0);
}

void its_inv(u32 device, u32 event) { its_command(0x0c | ((u64)device << 32), event, 0, 0); }
void its_invall(u32 icid) { its_command(0x0d, 0, icid, 0); }

void its_movall(u32 from, u32 to)
{
    its_command(0x0e, 0, (u64)from << 16, (u64)to << 16);
}

void its_sync(u32 target) { its_command(0x05, 0, (u64)target << 16, 0); }

void its_doorbell(u32 event)
{
    barrier();
    write32(ITS_BASE + 0x10040, event);                 /* GITS_TRANSLATER, DeviceID 0 */
}

/* -- what the test guests share ------------------------------------------------ */

static u8 config_table[65536] __attribute__((aligned(4096)));
static u8 pend_tables[8][65536] __attribute__((aligned(65536)));   /* 64 KiB aligned each */
static u64 device_table[512] __attribute__((aligned(4096)));
static u64 collection_table[512] __attribute__((aligned(4096)));
static u64 command_queue[512] __attribute__((aligned(4096)));
volatile u32 failures;

void its_bring_up(void)
{
    gic_distributor_init();
    gic_cpu_init(0, 0xf0);
    lpi_init_tables((u64)config_table, 16);
    for (u32 n = 0; n < 64; n++)
        lpi_config(8192 + n, 0xa0, 1);
    lpi_cpu_enable(0, (u64)pend_tables[0]);
    its_init((u64)device_table, (u64)collection_table, (u64)command_queue);
}

void lpi_enable_this_cpu(u64 cpu) { lpi_cpu_enable(cpu, (u64)pend_tables[cpu]); }

void check(int good, const char *what, u64 value)
{
    puts(good ? "ok " : "FAIL ");
    print(what, value);
    if (!good)
        failures++;
}

int count_cpus(void)
{
    int cpus = 1;
    while (cpus < 8 && psci(0xC4000004, (u64)cpus, 0, 0) >= 0)   /* AFFINITY_INFO */
        cpus++;
    return cpus;
}
