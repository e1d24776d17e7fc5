/*
 * clone3.c - clone3() with a child function on its own stack.
 *
 * glibc exports no clone3 wrapper, and the child of a CLONE_VM clone3 wakes
 * up on the new stack inside the syscall instruction, where C cannot follow
 * it: so the child's path (call fn(arg), then exit) is written in assembly,
 * using only registers the kernel copies into the child.
 *
 * We want clone3 for CLONE_CLEAR_SIGHAND (Linux 5.5): the kernel resets
 * every caught signal to SIG_DFL in the child, so no handler of ours can run
 * on the child's stack, without 62 sigaction calls per spawn. Returns the
 * child's pid, or -errno; -ENOSYS when this architecture has no trampoline.
 */
#include "internal.h"

#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_clone3
#define SYS_clone3 435
#endif

pid_t evm__clone3(struct clone_args *args, int (*fn)(void *), void *arg)
{
#if defined(__x86_64__)
	long ret;
	register void *r12 __asm__("r12") = (void *)fn;
	register void *r13 __asm__("r13") = arg;
	__asm__ volatile("syscall\n\t"
			 "test %%rax, %%rax\n\t"
			 "jnz 1f\n\t"
			 /* child: new stack, no frame to return to */
			 "xor %%ebp, %%ebp\n\t"
			 "mov %%r13, %%rdi\n\t"
			 "call *%%r12\n\t"
			 "mov %%eax, %%edi\n\t"
			 "mov $231, %%eax\n\t" /* exit_group */
			 "syscall\n\t"
			 "hlt\n\t"
			 "1:\n\t"
			 : "=a"(ret)
			 : "0"((long)SYS_clone3), "D"(args), "S"(sizeof(*args)), "r"(r12), "r"(r13)
			 : "rcx", "r11", "memory", "cc");
	return (pid_t)ret;
#elif defined(__aarch64__)
	register long x8 __asm__("x8") = SYS_clone3;
	register long x0 __asm__("x0") = (long)args;
	register long x1 __asm__("x1") = (long)sizeof(*args);
	register void *x19 __asm__("x19") = (void *)fn;
	register void *x20 __asm__("x20") = arg;
	__asm__ volatile("svc #0\n\t"
			 "cbnz x0, 1f\n\t"
			 "mov x29, xzr\n\t"
			 "mov x30, xzr\n\t"
			 "mov x0, x20\n\t"
			 "blr x19\n\t"
			 "mov x8, #94\n\t" /* exit_group */
			 "svc #0\n\t"
			 "1:\n\t"
			 : "+r"(x0)
			 : "r"(x8), "r"(x1), "r"(x19), "r"(x20)
			 : "x30", "memory", "cc");
	return (pid_t)x0;
#else
	(void)args;
	(void)fn;
	(void)arg;
	return -ENOSYS;
#endif
}
