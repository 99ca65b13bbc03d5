/* One stub per function of symbols.def. A stub jumps through its slot once the function is
   resolved; until then it jumps to sr_lazy_common with its index, which saves the argument
   registers, asks sr_lazy_resolve (resolve.c) for the address (loading the library on first use)
   and jumps there with the caller's arguments untouched: variadic functions (curl_easy_setopt)
   work like any other. The stubs are hidden: the binary does not export them, so a library's
   calls to its own functions never come back here. */

#define SR_LAZY(lib, name) SR_STUB name, __COUNTER__

#if defined(__x86_64__)

    .macro SR_STUB name, index
    .text
    .globl \name
    .hidden \name
    .type \name, @function
    .p2align 4
\name:
    movq sr_lazy_slots+8*\index(%rip), %r11
    testq %r11, %r11
    jz 1f
    jmp *%r11
1:
    movl $\index, %r11d
    jmp sr_lazy_common
    .size \name, .-\name
    .endm

    .text
    .p2align 4
    .type sr_lazy_common, @function
sr_lazy_common:
    pushq %rbp
    movq %rsp, %rbp
    subq $192, %rsp
    movq %rdi, 0(%rsp)
    movq %rsi, 8(%rsp)
    movq %rdx, 16(%rsp)
    movq %rcx, 24(%rsp)
    movq %r8, 32(%rsp)
    movq %r9, 40(%rsp)
    movq %rax, 48(%rsp)
    movdqa %xmm0, 64(%rsp)
    movdqa %xmm1, 80(%rsp)
    movdqa %xmm2, 96(%rsp)
    movdqa %xmm3, 112(%rsp)
    movdqa %xmm4, 128(%rsp)
    movdqa %xmm5, 144(%rsp)
    movdqa %xmm6, 160(%rsp)
    movdqa %xmm7, 176(%rsp)
    movl %r11d, %edi
    call sr_lazy_resolve
    movq %rax, %r11
    movq 0(%rsp), %rdi
    movq 8(%rsp), %rsi
    movq 16(%rsp), %rdx
    movq 24(%rsp), %rcx
    movq 32(%rsp), %r8
    movq 40(%rsp), %r9
    movq 48(%rsp), %rax
    movdqa 64(%rsp), %xmm0
    movdqa 80(%rsp), %xmm1
    movdqa 96(%rsp), %xmm2
    movdqa 112(%rsp), %xmm3
    movdqa 128(%rsp), %xmm4
    movdqa 144(%rsp), %xmm5
    movdqa 160(%rsp), %xmm6
    movdqa 176(%rsp), %xmm7
    movq %rbp, %rsp
    popq %rbp
    jmp *%r11
    .size sr_lazy_common, .-sr_lazy_common

#include "symbols.def"

#elif defined(__aarch64__)

    .macro SR_STUB name, index
    .text
    .globl \name
    .hidden \name
    .type \name, %function
    .p2align 4
\name:
    adrp x16, sr_lazy_slots+8*\index
    ldr x16, [x16, :lo12:sr_lazy_slots+8*\index]
    cbz x16, 1f
    br x16
1:
    mov x16, #\index
    b sr_lazy_common
    .size \name, .-\name
    .endm

    .text
    .p2align 4
    .type sr_lazy_common, %function
sr_lazy_common:
    stp x29, x30, [sp, #-224]!
    mov x29, sp
    stp x0, x1, [sp, #16]
    stp x2, x3, [sp, #32]
    stp x4, x5, [sp, #48]
    stp x6, x7, [sp, #64]
    str x8, [sp, #80]
    stp q0, q1, [sp, #96]
    stp q2, q3, [sp, #128]
    stp q4, q5, [sp, #160]
    stp q6, q7, [sp, #192]
    mov x0, x16
    bl sr_lazy_resolve
    mov x16, x0
    ldp x0, x1, [sp, #16]
    ldp x2, x3, [sp, #32]
    ldp x4, x5, [sp, #48]
    ldp x6, x7, [sp, #64]
    ldr x8, [sp, #80]
    ldp q0, q1, [sp, #96]
    ldp q2, q3, [sp, #128]
    ldp q4, q5, [sp, #160]
    ldp q6, q7, [sp, #192]
    ldp x29, x30, [sp], #224
    br x16
    .size sr_lazy_common, .-sr_lazy_common

#include "symbols.def"

#else
#error "CLazyLink has stubs for x86_64 and aarch64 only; add the architecture's stub to stubs.S."
#endif

    .section .note.GNU-stack, "", %progbits
