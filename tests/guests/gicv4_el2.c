/* GICv4.0 cross-check guest (gicv4-digest §9), run at EL2 on QEMU's virt
   board with gic-version=4.  It interprets the table of operations that
   tests/gicv4_el2_script.py generates (gicv4_el2_script.h): stores, MMIO
   loads, ITS commands, RAM dumps and a few GIC system registers (some read
   at EL1, where they are the virtual CPU interface's), printing
   one line per observable result on the PL011 UART (formats in the script's
   docstring).  MMU off: every access is a volatile load or store. */

typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long u64;

struct op {
    u64 kind, addr, value, size;
    u64 dw[4];
};

#include "gicv4_el2_script.h"

#define UART 0x09000000UL
#define GICD 0x08000000UL
#define GICR 0x080A0000UL
#define ITS 0x08080000UL
#define GITS_CWRITER 0x88UL
#define GITS_CREADR 0x90UL
#define CREADR_STALLED 1UL

#define SYSREG_READ(name) ({ u64 v; __asm__ volatile("mrs %0, " #name : "=r"(v)); v; })
#define SYSREG_WRITE(name, v) __asm__ volatile("msr " #name ", %0" :: "r"((u64)(v)))
#define ICC_SRE_EL2 S3_4_C12_C9_5
#define ICH_VTR_EL2 S3_4_C12_C11_1
#define ICC_PMR_EL1 S3_0_C4_C6_0
#define ICC_IGRPEN1_EL1 S3_0_C12_C12_7
#define ICC_IAR1_EL1 S3_0_C12_C12_0
#define ICC_EOIR1_EL1 S3_0_C12_C12_1
#define ICH_HCR_EL2 S3_4_C12_C11_0
#define ICH_VMCR_EL2 S3_4_C12_C11_7
#define ICH_AP1R0_EL2 S3_4_C12_C9_0
#define HCR_RW (1UL << 31)
#define HCR_IMO (1UL << 4)

void report_exception(u64 esr, u64 elr);
u64 el1_call(u64 which, u64 value);
int main(void);

static inline void barrier(void) { __asm__ volatile("dsb sy; isb" ::: "memory"); }

static void putc(int c)
{
    while (*(volatile u32 *)(UART + 0x18) & 0x20)
        ;
    *(volatile u32 *)UART = (u32)c;
}

static void puts(const char *text)
{
    while (*text)
        putc(*text++);
}

static void hex(u64 value, int digits)
{
    for (int shift = 4 * (digits - 1); shift >= 0; shift -= 4)
        putc("0123456789abcdef"[(value >> shift) & 0xf]);
}

static void line(char tag, u64 a, u64 b)
{
    putc(tag);
    putc(' ');
    hex(a, 16);
    putc(' ');
    hex(b, 16);
    putc('\n');
}

void report_exception(u64 esr, u64 elr)
{
    line('X', esr, elr);
}

static u64 load(u64 addr, u64 size)
{
    switch (size) {
    case 1: return *(volatile u8 *)addr;
    case 4: return *(volatile u32 *)addr;
    default: return *(volatile u64 *)addr;
    }
}

static void store(u64 addr, u64 value, u64 size)
{
    switch (size) {
    case 1: *(volatile u8 *)addr = (u8)value; break;
    case 4: *(volatile u32 *)addr = (u32)value; break;
    default: *(volatile u64 *)addr = value; break;
    }
}

static u64 sysreg(u64 which, u64 value)
{
    switch (which) {
    case SYSREG_CURRENTEL: return SYSREG_READ(CurrentEL);
    case SYSREG_ICH_VTR_EL2: return SYSREG_READ(ICH_VTR_EL2);
    case SYSREG_ICC_IAR1_EL1: return SYSREG_READ(ICC_IAR1_EL1) & 0xffffff;
    case SYSREG_ICC_EOIR1_EL1: SYSREG_WRITE(ICC_EOIR1_EL1, value); return value;
    case SYSREG_EL1_VIRQ: return el1_call(0, 0);
    case SYSREG_ICV_EOIR1_EL1: return el1_call(1, value);
    case SYSREG_ICH_AP1R0_EL2: return SYSREG_READ(ICH_AP1R0_EL2);
    default: return SYSREG_READ(ICH_HCR_EL2);
    }
}

static void run(const struct op *op)
{
    switch (op->kind) {
    case OP_STEP:
        line('S', op->value, 0);
        break;
    case OP_WRITE:
        store(op->addr, op->value, op->size);
        break;
    case OP_FILL:
        for (u64 offset = 0; offset < op->size; offset += 8)
            *(volatile u64 *)(op->addr + offset) = 0;
        break;
    case OP_READ:
        line('R', op->addr, load(op->addr, op->size));
        break;
    case OP_CMD: {
        volatile u64 *slot = (volatile u64 *)op->addr;
        for (int n = 0; n < 4; n++)
            slot[n] = op->dw[n];
        barrier();
        *(volatile u64 *)(ITS + GITS_CWRITER) = op->value;
        u64 creadr = 0;
        for (u64 tries = 0; tries < 1000000; tries++) {
            creadr = *(volatile u64 *)(ITS + GITS_CREADR);
            if (creadr == op->value || (creadr & CREADR_STALLED))
                break;
        }
        line('C', op->addr, creadr);
        break;
    }
    case OP_DUMP:
        putc('M');
        putc(' ');
        hex(op->addr, 16);
        putc(' ');
        for (u64 n = 0; n < op->size; n++)
            hex(*(volatile u8 *)(op->addr + n), 2);
        putc('\n');
        break;
    case OP_SYSREG:
        line('Y', op->addr, sysreg(op->addr, op->value));
        break;
    }
    barrier();
}

int main(void)
{
    /* The CPU interface at EL2 (system registers, Group 1 on, every priority
       allowed) and the distributor (ARE, Group 1): the platform, not the
       script's subject. */
    SYSREG_WRITE(ICC_SRE_EL2, SYSREG_READ(ICC_SRE_EL2) | 0x9);       /* SRE, Enable */
    __asm__ volatile("isb");
    *(volatile u32 *)GICD = (1 << 4) | (1 << 1);                      /* ARE, EnableGrp1 */
    *(volatile u32 *)(GICR + 0x14) = 0;                               /* GICR_WAKER: awake */
    while (*(volatile u32 *)(GICR + 0x14) & (1 << 2))
        ;
    SYSREG_WRITE(ICC_PMR_EL1, 0xff);
    SYSREG_WRITE(ICC_IGRPEN1_EL1, 1);
    /* The virtual CPU interface for EL1: on, Group 1 on, every priority
       allowed; EL1 is AArch64 and its ICC_* accesses are the virtual ones. */
    SYSREG_WRITE(ICH_VMCR_EL2, (0xffUL << 24) | (1 << 1));          /* VPMR, VENG1 */
    SYSREG_WRITE(ICH_HCR_EL2, 1);                                     /* En */
    SYSREG_WRITE(HCR_EL2, HCR_RW | HCR_IMO);
    barrier();
    for (const struct op *op = script; op->kind != OP_END; op++)
        run(op);
    puts("END\n");
    return 0;
}
