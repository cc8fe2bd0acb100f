/*
 * crc32c — CRC-32C (Castagnoli), the checksum of every spool record.
 * Uses the SSE 4.2 instruction when the CPU has it, a table otherwise.
 */
#ifndef RELAYD_CRC32C_H
#define RELAYD_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* crc32c(0, p, n) checksums p; feed the result back in to continue. */
uint32_t crc32c(uint32_t crc, const void *p, size_t n);

#endif
