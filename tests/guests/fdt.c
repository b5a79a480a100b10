/* Just enough of a flattened device tree reader for the test guests: the
   address of the n-th `reg` entry of the first node whose `compatible` holds
   a given string (the node's parent must use 2 address and 2 size cells, as
   QEMU's virt tree does for everything the guests look up). */
#include "guest.h"

#define FDT_MAGIC 0xd00dfeed
#define FDT_BEGIN_NODE 1
#define FDT_END_NODE 2
#define FDT_PROP 3
#define FDT_NOP 4
#define FDT_END 9
#define MAX_DEPTH 16

static u32 be32(const u8 *bytes)
{
    return ((u32)bytes[0] << 24) | ((u32)bytes[1] << 16) | ((u32)bytes[2] << 8) | bytes[3];
}

static int same(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return *a == *b;
}

static u64 align4(u64 value) { return (value + 3) & ~3ul; }

/* Whether the NUL-separated string list [list, list + length) holds `wanted`. */
static int holds(const char *list, u32 length, const char *wanted)
{
    u32 at = 0;
    while (at < length) {
        if (same(list + at, wanted))
            return 1;
        while (at < length && list[at])
            at++;
        at++;
    }
    return 0;
}

/* The value of property `property` of the first node named `node` (without
   its unit address), and its length in *length; 0 if there is none. */
const u8 *fdt_property(u64 dtb, const char *node, const char *property, u32 *length)
{
    const u8 *blob = (const u8 *)dtb;
    if (be32(blob) != FDT_MAGIC)
        return 0;
    const u8 *cursor = blob + be32(blob + 8);
    const char *strings = (const char *)blob + be32(blob + 12);
    int depth = -1, inside = -1;
    for (;;) {
        u32 token = be32(cursor);
        cursor += 4;
        if (token == FDT_BEGIN_NODE) {
            depth++;
            const char *name = (const char *)cursor;
            u64 size = 0;
            while (name[size] && name[size] != '@')
                size++;
            u64 at = 0;
            while (node[at] && at < size && node[at] == name[at])
                at++;
            if (inside < 0 && at == size && !node[at])
                inside = depth;
            while (cursor[size])
                size++;
            cursor += align4(size + 1);
        } else if (token == FDT_PROP) {
            u32 size = be32(cursor), name = be32(cursor + 4);
            const u8 *value = cursor + 8;
            if (inside == depth && same(strings + name, property)) {
                *length = size;
                return value;
            }
            cursor = value + align4(size);
        } else if (token == FDT_END_NODE) {
            if (inside == depth)
                return 0;
            depth--;
        } else if (token != FDT_NOP) {
            return 0;
        }
    }
}

u64 fdt_reg(u64 dtb, const char *compatible, int index)
{
    const u8 *blob = (const u8 *)dtb;
    if (be32(blob) != FDT_MAGIC)
        return 0;
    const u8 *cursor = blob + be32(blob + 8);
    const char *strings = (const char *)blob + be32(blob + 12);
    const u8 *reg[MAX_DEPTH] = {0};
    u32 reg_length[MAX_DEPTH] = {0};
    int matched[MAX_DEPTH] = {0};
    int depth = -1;
    for (;;) {
        u32 token = be32(cursor);
        cursor += 4;
        if (token == FDT_BEGIN_NODE) {
            depth++;
            if (depth >= MAX_DEPTH)
                return 0;
            reg[depth] = 0;
            matched[depth] = 0;
            u64 length = 0;
            while (cursor[length])
                length++;
            cursor += align4(length + 1);
        } else if (token == FDT_PROP) {
            u32 length = be32(cursor), name = be32(cursor + 4);
            const u8 *value = cursor + 8;
            if (same(strings + name, "reg")) {
                reg[depth] = value;
                reg_length[depth] = length;
            } else if (same(strings + name, "compatible")) {
                matched[depth] = holds((const char *)value, length, compatible);
            }
            cursor = value + align4(length);
        } else if (token == FDT_END_NODE) {
            if (matched[depth] && reg[depth] && (u32)(index + 1) * 16 <= reg_length[depth]) {
                const u8 *entry = reg[depth] + 16 * index;
                return ((u64)be32(entry) << 32) | be32(entry + 4);
            }
            depth--;
        } else if (token != FDT_NOP) {
            return 0;                               /* FDT_END or garbage */
        }
    }
}
