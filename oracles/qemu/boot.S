/*
 * Boot, mode switch and the low-level access path of the QEMU oracle guest.
 *
 * QEMU's multiboot loader (-kernel, a.out kludge: the image is a flat binary
 * loaded at LOAD_PHYS) enters _start32 in 32-bit protected mode with paging
 * off (Multiboot 0.6.96 section 3.2).  _start32 builds nothing: the boot page
 * tables below are static.  It turns on PAE (and LA57 when the input asks for
 * 5-level paging: CR4.LA57 can only change while paging is off, SDM Vol. 3A
 * 4.1.1), long mode and paging, and jumps to the kernel's high alias.
 *
 * Layout of the guest's own mappings, reached from any scenario through the
 * one top-level slot (index 511) the oracle patches into the scenario's top
 * table during an access:
 *
 *   0xffffff8000000000  physmap: 1 GiB page at physical 0 (supervisor)
 *   0xffffffff40000000  the user stub page (user, read-only)
 *   0xffffffff80000000  kernel: 1 GiB page at physical 0 (supervisor)
 */

#define KVMA 0xffffffff80000000
#define LOAD_PHYS 0x4000000
#define PHYS(x) ((x) - KVMA)
#define NONCANON 0x8000000000000000

	.section .multiboot, "a"
	.align 4
mb_header:
	.long 0x1badb002
	.long 0x00010000
	.long -(0x1badb002 + 0x00010000)
	.long PHYS(mb_header)
	.long PHYS(__image_start)
	.long PHYS(__load_end)
	.long PHYS(__bss_end)
	.long PHYS(_start32)

	.section .text.boot, "ax"
	.code32
	.globl _start32
_start32:
	cli
	mov %ebx, %edi
	mov $PHYS(boot_stack_top), %esp
	/* la57 flag: second word of the first module (the oracle's input). */
	mov 24(%ebx), %eax
	mov 0(%eax), %eax
	mov 8(%eax), %ecx
	mov $0x20, %eax			/* CR4.PAE */
	mov $PHYS(pml4_boot), %edx
	test %ecx, %ecx
	jz 1f
	or $0x1000, %eax		/* CR4.LA57 */
	mov $PHYS(pml5_boot), %edx
1:	mov %eax, %cr4
	mov %edx, %cr3
	mov $0xc0000080, %ecx		/* IA32_EFER.LME */
	rdmsr
	or $0x100, %eax
	wrmsr
	mov %cr0, %eax
	or $0x80000001, %eax		/* CR0.PG | CR0.PE */
	mov %eax, %cr0
	lgdt PHYS(gdt_desc32)
	ljmp $0x08, $PHYS(long_low)

	.code64
long_low:
	movabs $long_high, %rax
	jmp *%rax
long_high:
	mov $0x10, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	xor %eax, %eax
	mov %eax, %fs
	mov %eax, %gs
	movabs $kstack_top, %rsp
	mov %edi, %edi
	call kmain
2:	hlt
	jmp 2b

/*
 * run_access(rip, cs, rflags, rsp, ss, rdi): enter the access through IRETQ
 * with every other general register non-canonical, so that an instruction a
 * fetch probe happens to execute cannot reach memory through a register
 * (it raises #GP instead).  The access ends in an exception; exc_common
 * records it and returns from run_access on the saved kernel stack.
 */
	.text
	.globl run_access
run_access:
	push %rbp
	push %rbx
	push %r12
	push %r13
	push %r14
	push %r15
	mov %rsp, saved_rsp(%rip)
	movq $1, in_access(%rip)
	push %r8
	push %rcx
	push %rdx
	push %rsi
	push %rdi
	mov %r9, %rdi
	movabs $NONCANON, %rax
	mov %rax, %rbx
	mov %rax, %rcx
	mov %rax, %rdx
	mov %rax, %rsi
	mov %rax, %rbp
	mov %rax, %r8
	mov %rax, %r9
	mov %rax, %r10
	mov %rax, %r11
	mov %rax, %r12
	mov %rax, %r13
	mov %rax, %r14
	mov %rax, %r15
	.globl iret_site
iret_site:
	iretq

exc_common:
	pop %rax
	mov %rax, exc_vector(%rip)
	pop %rax
	mov %rax, exc_error(%rip)
	mov (%rsp), %rax
	mov %rax, exc_rip(%rip)
	mov %cr2, %rax
	mov %rax, exc_cr2(%rip)
	push $2
	popfq
	cmpq $0, in_access(%rip)
	je exc_outside
	movq $0, in_access(%rip)
	mov saved_rsp(%rip), %rsp
	pop %r15
	pop %r14
	pop %r13
	pop %r12
	pop %rbx
	pop %rbp
	ret
exc_outside:
	movabs $kstack_top, %rsp
	call guest_panic
3:	hlt
	jmp 3b

.macro EXC vec, has_err
exc_\vec:
	.if \has_err == 0
	push $0
	.endif
	push $\vec
	jmp exc_common
.endm

	.irp v, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31
	EXC \v, 0
	.endr
	.irp v, 8,10,11,12,13,14,17,21,29,30
	EXC \v, 1
	.endr

	.section .rodata
	.align 8
	.globl exc_table
exc_table:
	.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.quad exc_\v
	.endr

/*
 * Access stubs.  A write is a byte load then a store of the same byte, not a
 * locked read-modify-write: single-threaded TCG splits `lock xadd` into a
 * load and a store, so its fault would carry the load's error code.  When
 * the load faults, the guest retries with poke, a plain store that must
 * fault too (every mode's write rights are a subset of its read rights).
 * Supervisor stubs sit in the kernel image, so on supervisor pages.
 */
	.text
	.globl sup_read, sup_read_done, sup_write, sup_write_done, sup_poke, sup_poke_done
sup_read:
	mov (%rdi), %al
sup_read_done:
	ud2
sup_write:
	mov (%rdi), %al
	mov %al, (%rdi)
sup_write_done:
	ud2
sup_poke:
	movb $0, (%rdi)
sup_poke_done:
	ud2

/* User stubs: alone on the page mapped user-accessible at USER_VA. */
	.section .user, "ax"
	.align 4096
	.globl user_page, user_read, user_read_done, user_write, user_write_done, user_poke, user_poke_done
user_page:
user_read:
	mov (%rdi), %al
user_read_done:
	ud2
user_write:
	mov (%rdi), %al
	mov %al, (%rdi)
user_write_done:
	ud2
user_poke:
	movb $0, (%rdi)
user_poke_done:
	ud2
	.align 4096

	.data
	.align 8
gdt:
	.quad 0
	.quad 0x00af9a000000ffff	/* 0x08 kernel code, 64-bit */
	.quad 0x00cf92000000ffff	/* 0x10 kernel data */
	.quad 0x00cff2000000ffff	/* 0x18 user data (0x1b) */
	.quad 0x00affa000000ffff	/* 0x20 user code, 64-bit (0x23) */
	.globl gdt_tss
gdt_tss:
	.quad 0				/* 0x28 TSS, filled in by kmain */
	.quad 0
gdt_end:
gdt_desc32:
	.word gdt_end - gdt - 1
	.long PHYS(gdt)
	.globl gdt_desc64
	.align 8
gdt_desc64:
	.word gdt_end - gdt - 1
	.quad gdt

	.globl saved_rsp, in_access, exc_vector, exc_error, exc_rip, exc_cr2
saved_rsp: .quad 0
in_access: .quad 0
exc_vector: .quad 0
exc_error: .quad 0
exc_rip: .quad 0
exc_cr2: .quad 0

/* Boot page tables.  Entry flags: 3 = P|RW, 7 = P|RW|US, 5 = P|US, 0x83 = P|RW|PS. */
	.section .data.tables, "aw"
	.align 4096
	.globl pml4_boot, pml5_boot, guest_pml4, guest_pdpt
pml4_boot:
	.quad PHYS(pdpt_id) + 3
	.fill 510, 8, 0
	.quad PHYS(guest_pdpt) + 7
pml5_boot:
	.quad PHYS(pml4_id) + 3
	.fill 510, 8, 0
	.quad PHYS(guest_pml4) + 7
pml4_id:
	.quad PHYS(pdpt_id) + 3
	.fill 511, 8, 0
guest_pml4:
	.fill 511, 8, 0
	.quad PHYS(guest_pdpt) + 7
pdpt_id:
	.quad 0x83
	.fill 511, 8, 0
guest_pdpt:
	.quad 0x83
	.fill 508, 8, 0
	.quad PHYS(user_pd) + 7
	.quad 0x83
	.quad 0
user_pd:
	.quad PHYS(user_pt) + 7
	.fill 511, 8, 0
user_pt:
	.quad PHYS(user_page) + 5
	.fill 511, 8, 0

	.section .bss
	.align 4096
	.space 16384
boot_stack_top:
	.space 65536
	.globl kstack_top
kstack_top:
	.space 16384
	.globl ist_top
ist_top:

	.section .note.GNU-stack, "", @progbits
