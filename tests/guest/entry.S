/*
 * entry.S - multiboot v1 entry point of the libqsync test guest.
 *
 * The loader (QEMU's -kernel multiboot support) enters _start in 32-bit
 * protected mode, paging off, interrupts off, with EAX = 0x2BADB002 and
 * EBX = physical address of the multiboot information structure. The GDT it
 * leaves behind is not ours to rely on, so we load our own before anything
 * can fault or take an interrupt.
 */

#define MB_HEADER_MAGIC 0x1BADB002
#define MB_HEADER_FLAGS 0x00000000 /* ELF image: no address fields needed */

#define SEL_CODE 0x08
#define SEL_DATA 0x10

        .section .multiboot, "a"
        .balign 4
mb_header:
        .long MB_HEADER_MAGIC
        .long MB_HEADER_FLAGS
        .long -(MB_HEADER_MAGIC + MB_HEADER_FLAGS)

        .section .text
        .globl _start
        .type _start, @function
_start:
        cli
        cld
        /* EBX (info pointer) survives to the call below; keep magic in ESI. */
        movl    %eax, %esi

        lgdt    gdt_ptr
        ljmp    $SEL_CODE, $1f
1:      movw    $SEL_DATA, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %fs
        movw    %ax, %gs
        movw    %ax, %ss
        movl    $stack_top, %esp

        /*
         * Clear .bss, a dword at a time (link.ld aligns both ends to 4).
         * Under -icount QEMU counts every iteration of a rep string
         * instruction as one instruction, so keep this short: the stack
         * has its own section and is not cleared.
         */
        movl    $__bss_start, %edi
        movl    $__bss_end, %ecx
        subl    %edi, %ecx
        shrl    $2, %ecx
        xorl    %eax, %eax
        rep stosl

        pushl   %ebx            /* multiboot info */
        pushl   %esi            /* loader magic */
        call    guest_main
        /* guest_main does not return; stop here if it ever does. */
2:      cli
        hlt
        jmp     2b
        .size _start, . - _start

/*
 * Exception stubs. Each leaves the same frame on the stack:
 *   [vector] [error code] [eip] [cs] [eflags]
 * pushing a zero error code where the CPU does not push one.
 */
        .macro EXC_NOERR vec
exc_stub_\vec:
        pushl   $0
        pushl   $\vec
        jmp     exc_common
        .endm

        .macro EXC_ERR vec
exc_stub_\vec:
        pushl   $\vec
        jmp     exc_common
        .endm

        .irp v, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31
        EXC_NOERR \v
        .endr
        .irp v, 8,10,11,12,13,14,17,21,29,30
        EXC_ERR \v
        .endr

exc_common:
        pushl   %esp            /* pointer to the frame above */
        call    guest_exception /* does not return */
3:      cli
        hlt
        jmp     3b

/* IRQ0 (PIT) after the PIC remap: count, acknowledge, return. */
        .globl irq0_entry
irq0_entry:
        pushl   %eax
        incl    guest_ticks
        movb    $0x20, %al      /* non-specific EOI to the master PIC */
        outb    %al, $0x20
        popl    %eax
        iret

/* Every other vector (masked IRQs, spurious IRQ7/15): ignore. */
        .globl ignore_entry
ignore_entry:
        iret

        .section .rodata
        .balign 4
        .globl exc_stub_table
exc_stub_table:
        .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
        .long   exc_stub_\v
        .endr

        .section .data
        .balign 8
gdt:
        .quad   0                       /* null */
        .quad   0x00CF9B000000FFFF      /* 0x08: code, flat 4 GiB, 32-bit */
        .quad   0x00CF93000000FFFF      /* 0x10: data, flat 4 GiB */
gdt_end:
        .balign 4
        .word   0                       /* pad so the base is aligned */
gdt_ptr:
        .word   gdt_end - gdt - 1
        .long   gdt

        .section .stack, "aw", @nobits
        .balign 16
stack_bottom:
        .skip   16384
stack_top:

        .section .note.GNU-stack, "", @progbits
