/*
 * rawsys.h - system calls that touch nothing but registers.
 *
 * Code that runs on another process's memory and thread pointer (a child
 * between clone and exec, the spawn helper) must not write thread-local
 * storage: libc's wrappers set errno, which there is the errno of the
 * thread that cloned it, possibly running meanwhile. These return the
 * kernel's answer as it is: >= 0, or -errno.
 *
 * EVM_RAWSYS is 1 where they are real (x86-64, aarch64). Elsewhere they go
 * through libc's syscall(), errno included, and what needs the guarantee
 * (EVM_SPAWN_NOWAIT) is not used.
 */
#ifndef EVM_RAWSYS_H
#define EVM_RAWSYS_H

#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define EVM_RAWSYS 1
__attribute__((always_inline)) static inline long evm__raw(long n, long a, long b, long c, long d, long e,
							  long f)
{
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}
#elif defined(__aarch64__)
#define EVM_RAWSYS 1
__attribute__((always_inline)) static inline long evm__raw(long n, long a, long b, long c, long d, long e,
							  long f)
{
	register long x8 __asm__("x8") = n;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = d;
	register long x4 __asm__("x4") = e;
	register long x5 __asm__("x5") = f;
	__asm__ volatile("svc #0"
			 : "+r"(x0)
			 : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
			 : "memory");
	return x0;
}
#else
#define EVM_RAWSYS 0
static inline long evm__raw(long n, long a, long b, long c, long d, long e, long f)
{
	long r = syscall(n, a, b, c, d, e, f);
	return r < 0 ? -errno : r;
}
#endif

#define evm__raw0(n) evm__raw((n), 0, 0, 0, 0, 0, 0)
#define evm__raw1(n, a) evm__raw((n), (long)(a), 0, 0, 0, 0, 0)
#define evm__raw2(n, a, b) evm__raw((n), (long)(a), (long)(b), 0, 0, 0, 0)
#define evm__raw3(n, a, b, c) evm__raw((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define evm__raw4(n, a, b, c, d) evm__raw((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define evm__raw5(n, a, b, c, d, e) evm__raw((n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), 0)

#endif
