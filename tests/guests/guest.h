/* The C test guests' runtime: UART output, PSCI, GIC and ITS helpers. */
#ifndef GUEST_H
#define GUEST_H

typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long u64;

#define UART_BASE 0x09000000UL
/* Where the GIC frames are: QEMU's addresses until `platform_init` reads
   them from the device tree, as a driver finds them. */
extern u64 gicd_base, its_base, gicr_base;
/* Bytes between two redistributors: 128 KiB, or 256 KiB when GICR_TYPER.VLPIS
   says the redistributors have VLPI frames (GICv4), as Linux finds it. */
extern u64 gicr_stride;
#define GICD_BASE gicd_base
#define ITS_BASE its_base
#define GICR_BASE gicr_base
#define GICR_STRIDE gicr_stride
#define SGI_BASE(cpu) (GICR_BASE + (cpu) * GICR_STRIDE + 0x10000UL)

static inline void write32(u64 address, u32 value) { *(volatile u32 *)address = value; }
static inline u32 read32(u64 address) { return *(volatile u32 *)address; }
static inline void write64(u64 address, u64 value) { *(volatile u64 *)address = value; }
static inline u64 read64(u64 address) { return *(volatile u64 *)address; }
static inline void barrier(void) { __asm__ volatile("dsb sy; isb" ::: "memory"); }

#define SYSREG_READ(name) ({ u64 v; __asm__ volatile("mrs %0, " #name : "=r"(v)); v; })
#define SYSREG_WRITE(name, v) __asm__ volatile("msr " #name ", %0" :: "r"((u64)(v)))

void putc(int c);
void puts(const char *text);
void puthex(u64 value);
void newline(void);
void print(const char *text, u64 value);      /* text, the value in hex, newline */
void system_off(void) __attribute__((noreturn));
void cpu_off(void) __attribute__((noreturn));
long psci(u64 function, u64 a1, u64 a2, u64 a3);
void secondary_start(void);

void irq_handler(void);
void report_exception(u64 esr, u64 elr);
int main(u64 dtb);
void secondary_main(u64 cpu);

/* The device tree: the n-th reg address of the first node compatible with
   `compatible` (0 if none); `platform_init` sets the GIC frame addresses from
   it and returns how many it found (3 on a good tree). */
u64 fdt_reg(u64 dtb, const char *compatible, int index);
const u8 *fdt_property(u64 dtb, const char *node, const char *property, u32 *length);
int platform_init(u64 dtb);

/* Per-CPU interrupt log kept by the runtime's IRQ handler. */
#define LOG_SIZE 64
extern volatile u32 irq_log[8][LOG_SIZE];
extern volatile u32 irq_count[8];
u64 this_cpu(void);

/* GIC bring-up: distributor (Group 1, ARE), this CPU's redistributor awake,
   CPU interface (SRE, PMR, Group 1 on). */
void gic_distributor_init(void);
void gic_cpu_init(u64 cpu, u32 priority_mask);
void gic_enable_sgi(u64 cpu, u32 intid, u8 priority);
void send_sgi(u64 target_cpu, u32 intid);

/* LPIs and the ITS. */
void lpi_init_tables(u64 prop_table, u32 id_bits);
void lpi_cpu_enable(u64 cpu, u64 pend_table);
void lpi_config(u32 intid, u8 priority, int enable);
void its_init(u64 device_table, u64 collection_table, u64 queue);
void its_command(u64 dw0, u64 dw1, u64 dw2, u64 dw3);
void its_mapd(u32 device, u64 itt, u32 event_bits);
void its_mapc(u32 icid, u32 target);
void its_mapti(u32 device, u32 event, u32 intid, u32 icid);
void its_int(u32 device, u32 event);
void its_movi(u32 device, u32 event, u32 icid);
void its_inv(u32 device, u32 event);
void its_invall(u32 icid);
void its_movall(u32 from, u32 to);
void its_sync(u32 target);
void its_doorbell(u32 event);

/* The test guests' common bring-up: the distributor, CPU 0's interface (PMR
   0xf0), LPI tables in the runtime's memory with LPIs 8192..8255 enabled at
   priority 0xa0, CPU 0's LPIs on, and the ITS on its tables and queue.
   `lpi_enable_this_cpu` turns on a secondary's LPIs (its own pending table). */
void its_bring_up(void);
void lpi_enable_this_cpu(u64 cpu);

/* Checks: print "ok <what><value>" or "FAIL ...", counting failures. */
extern volatile u32 failures;
void check(int good, const char *what, u64 value);
/* CPUs the machine has (PSCI AFFINITY_INFO answers for them), up to 8. */
int count_cpus(void);

/* Spin until `*flag` reaches `value` (or give up after many tries: 0). */
int wait_for(volatile u32 *flag, u32 value);
void spin_lock(volatile u32 *lock);
void spin_unlock(volatile u32 *lock);

#endif
