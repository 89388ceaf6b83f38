// CRC-32C (Castagnoli) by carry-less multiplication on 512-bit vectors.
//
// The folding and the final Barrett reduction are those of Intel's "Fast
// CRC Computation for Generic Polynomials Using PCLMULQDQ Instruction"
// (the white paper hash/crc32's ieeeCLMUL follows; the reduction below is
// that function's, under the Go licence), with Castagnoli's constants in
// place of IEEE's and four 512-bit accumulators in place of one, so that
// the multiplier's latency is hidden. crc32c_amd64.go says how each
// constant is made, and TestCastagnoliConstants makes them again.

//go:build !purego

#include "textflag.h"

// Fold by 2048 bits (four 512-bit accumulators): x^(2048±32) mod P.
DATA k2048<>+0x00(SB)/8, $0x0dcb17aa4
DATA k2048<>+0x08(SB)/8, $0x0b9e02b86
DATA k2048<>+0x10(SB)/8, $0x0dcb17aa4
DATA k2048<>+0x18(SB)/8, $0x0b9e02b86
DATA k2048<>+0x20(SB)/8, $0x0dcb17aa4
DATA k2048<>+0x28(SB)/8, $0x0b9e02b86
DATA k2048<>+0x30(SB)/8, $0x0dcb17aa4
DATA k2048<>+0x38(SB)/8, $0x0b9e02b86
GLOBL k2048<>(SB), RODATA, $64

// Fold by 512 bits: x^(512±32) mod P.
DATA k512<>+0x00(SB)/8, $0x0740eef02
DATA k512<>+0x08(SB)/8, $0x09e4addf8
DATA k512<>+0x10(SB)/8, $0x0740eef02
DATA k512<>+0x18(SB)/8, $0x09e4addf8
DATA k512<>+0x20(SB)/8, $0x0740eef02
DATA k512<>+0x28(SB)/8, $0x09e4addf8
DATA k512<>+0x30(SB)/8, $0x0740eef02
DATA k512<>+0x38(SB)/8, $0x09e4addf8
GLOBL k512<>(SB), RODATA, $64

// Fold by 128 bits: x^(128±32) mod P.
DATA k128<>+0x00(SB)/8, $0x0f20c0dfe
DATA k128<>+0x08(SB)/8, $0x14cd00bd6
GLOBL k128<>(SB), RODATA, $16

// x^64 mod P.
DATA k64<>+0x00(SB)/8, $0x0dd45aab8
GLOBL k64<>(SB), RODATA, $8

// P reflected, and floor(x^64 / P) reflected.
DATA kpoly<>+0x00(SB)/8, $0x105ec76f1
DATA kpoly<>+0x08(SB)/8, $0x0dea713f1
GLOBL kpoly<>(SB), RODATA, $16

// func castagnoliAVX512(crc uint32, p []byte) uint32
// len(p) must be at least 256 and a multiple of 64; crc is not inverted
// on the way in or out (the caller does it).
TEXT ·castagnoliAVX512(SB), NOSPLIT, $0-36
	MOVL crc+0(FP), AX
	MOVQ p_base+8(FP), SI
	MOVQ p_len+16(FP), CX

	VMOVQ     AX, X10 // zeroes the rest of Z10
	VMOVDQU64 0x00(SI), Z0
	VMOVDQU64 0x40(SI), Z1
	VMOVDQU64 0x80(SI), Z2
	VMOVDQU64 0xc0(SI), Z3
	VPXORQ    Z10, Z0, Z0
	ADDQ      $256, SI
	SUBQ      $256, CX
	CMPQ      CX, $256
	JB        reduce4

	VMOVDQU64 k2048<>(SB), Z8

loop256:
	VPCLMULQDQ $0x11, Z8, Z0, Z4
	VPCLMULQDQ $0x00, Z8, Z0, Z0
	VPCLMULQDQ $0x11, Z8, Z1, Z5
	VPCLMULQDQ $0x00, Z8, Z1, Z1
	VPCLMULQDQ $0x11, Z8, Z2, Z6
	VPCLMULQDQ $0x00, Z8, Z2, Z2
	VPCLMULQDQ $0x11, Z8, Z3, Z7
	VPCLMULQDQ $0x00, Z8, Z3, Z3
	VPTERNLOGD $0x96, 0x00(SI), Z4, Z0
	VPTERNLOGD $0x96, 0x40(SI), Z5, Z1
	VPTERNLOGD $0x96, 0x80(SI), Z6, Z2
	VPTERNLOGD $0x96, 0xc0(SI), Z7, Z3
	ADDQ       $256, SI
	SUBQ       $256, CX
	CMPQ       CX, $256
	JAE        loop256

reduce4:
	// Fold the four accumulators into Z3, each by 512 bits onto the next.
	VMOVDQU64  k512<>(SB), Z8
	VPCLMULQDQ $0x11, Z8, Z0, Z4
	VPCLMULQDQ $0x00, Z8, Z0, Z0
	VPTERNLOGD $0x96, Z4, Z0, Z1
	VPCLMULQDQ $0x11, Z8, Z1, Z5
	VPCLMULQDQ $0x00, Z8, Z1, Z1
	VPTERNLOGD $0x96, Z5, Z1, Z2
	VPCLMULQDQ $0x11, Z8, Z2, Z6
	VPCLMULQDQ $0x00, Z8, Z2, Z2
	VPTERNLOGD $0x96, Z6, Z2, Z3

	// The 64-byte blocks left.
	CMPQ CX, $64
	JB   lanes

loop64:
	VPCLMULQDQ $0x11, Z8, Z3, Z4
	VPCLMULQDQ $0x00, Z8, Z3, Z3
	VPTERNLOGD $0x96, 0x00(SI), Z4, Z3
	ADDQ       $64, SI
	SUBQ       $64, CX
	CMPQ       CX, $64
	JAE        loop64

lanes:
	// Fold the four 128-bit lanes of Z3 into X1, each by 128 bits.
	VMOVDQA       X3, X1
	VEXTRACTI32X4 $1, Z3, X2
	VEXTRACTI32X4 $2, Z3, X5
	VEXTRACTI32X4 $3, Z3, X6
	VZEROUPPER

	MOVOU     k128<>(SB), X0
	MOVOA     X1, X4
	PCLMULQDQ $0x00, X0, X1
	PCLMULQDQ $0x11, X0, X4
	PXOR      X4, X1
	PXOR      X2, X1

	MOVOA     X1, X4
	PCLMULQDQ $0x00, X0, X1
	PCLMULQDQ $0x11, X0, X4
	PXOR      X4, X1
	PXOR      X5, X1

	MOVOA     X1, X4
	PCLMULQDQ $0x00, X0, X1
	PCLMULQDQ $0x11, X0, X4
	PXOR      X4, X1
	PXOR      X6, X1

	// From 128 bits to the 32-bit CRC (hash/crc32's ieeeCLMUL "finish").
	PCMPEQB   X3, X3
	PCLMULQDQ $1, X1, X0
	PSRLDQ    $8, X1
	PXOR      X0, X1

	MOVOA X1, X2
	MOVQ  k64<>(SB), X0

	PSRLQ     $32, X3 // a 32-bit mask
	PSRLDQ    $4, X2
	PAND      X3, X1
	PCLMULQDQ $0, X0, X1
	PXOR      X2, X1

	MOVOU kpoly<>(SB), X0

	MOVOA     X1, X2
	PAND      X3, X1
	PCLMULQDQ $0x10, X0, X1
	PAND      X3, X1
	PCLMULQDQ $0, X0, X1
	PXOR      X2, X1

	PEXTRD $1, X1, AX
	MOVL   AX, ret+32(FP)
	RET
