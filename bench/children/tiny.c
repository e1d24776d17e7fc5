/*
 * tiny.c - the benchmark workload: a static program with no libc, so what a
 * benchmark measures is the monitor and the kernel, not the child's startup.
 *
 *   tiny            exit 0 at once (S1)
 *   tiny p          block forever (S2: long-lived children cost almost nothing)
 *   tiny n          nap 12 ms, then exit 0 (S7's restarts: a run of 10 ms or
 *                   more counts as stable, so the next restart is not delayed)
 *   tiny s          block reading fd 0 until EOF, then exit (S3: the storm
 *                   trigger is the harness closing the pipe's write end)
 *   tiny t          write a record {pid, CLOCK_MONOTONIC ns} to fd 1, exit (S4)
 *   tiny w          'w'ait for EOF on fd 0 like s, then write the record like t
 *   tiny c          as w, and the record's pid also carries the CPU the child
 *                   ran on when it stamped, in bits 32-47 (S4 traced:
 *                   bench/stormtrace.py)
 *
 * The record is 16 bytes written with one write(2); on an O_APPEND file or a
 * pipe that is atomic, so many children can share one file.
 */
#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__)
#define NR_read 0
#define NR_write 1
#define NR_getpid 39
#define NR_exit_group 231
#define NR_clock_gettime 228
#define NR_ppoll 271
#define NR_getcpu 309

static long sys3(long n, long a, long b, long c)
{
	long r;
	__asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
	return r;
}

static long sys4(long n, long a, long b, long c, long d)
{
	long r;
	register long r10 __asm__("r10") = d;
	__asm__ volatile("syscall"
			 : "=a"(r)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
			 : "rcx", "r11", "memory");
	return r;
}

__asm__(".text\n.globl _start\n_start:\n"
	"  xor %rbp, %rbp\n  mov %rsp, %rdi\n  and $-16, %rsp\n  call tiny_main\n  hlt\n");
#elif defined(__aarch64__)
#define NR_read 63
#define NR_write 64
#define NR_getpid 172
#define NR_exit_group 94
#define NR_clock_gettime 113
#define NR_ppoll 73
#define NR_getcpu 168

static long sys4(long n, long a, long b, long c, long d)
{
	register long x8 __asm__("x8") = n;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = d;
	__asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
	return x0;
}

static long sys3(long n, long a, long b, long c)
{
	return sys4(n, a, b, c, 0);
}

__asm__(".text\n.globl _start\n_start:\n  mov x0, sp\n  bl tiny_main\n  brk #0\n");
#else
#error "tiny.c: add the syscall glue for this architecture"
#endif

struct ts {
	long sec, nsec;
};

__attribute__((noreturn)) static void die(int code)
{
	for (;;)
		sys3(NR_exit_group, code, 0, 0);
}

static void wait_eof(void)
{
	char c;
	for (;;) {
		long n = sys3(NR_read, 0, (long)&c, 1);
		if (n == 0)
			return;
		if (n < 0 && n != -4) /* EINTR: read again */
			die(3);
	}
}

static void stamp(int with_cpu)
{
	struct ts t;
	int64_t rec[2];
	unsigned cpu = 0;
	if (with_cpu)
		sys3(NR_getcpu, (long)&cpu, 0, 0);
	sys3(NR_clock_gettime, 1 /* CLOCK_MONOTONIC */, (long)&t, 0);
	rec[0] = sys3(NR_getpid, 0, 0, 0) | (int64_t)(cpu & 0xffff) << 32;
	rec[1] = (int64_t)t.sec * 1000000000 + t.nsec;
	if (sys3(NR_write, 1, (long)rec, sizeof(rec)) != (long)sizeof(rec))
		die(4);
}

__attribute__((noreturn, used)) void tiny_main(long *sp);

__attribute__((noreturn, used)) void tiny_main(long *sp)
{
	long argc = sp[0];
	const char *mode = argc > 1 ? (const char *)sp[2] : "";
	switch (mode[0]) {
	case 'p':
		for (;;)
			sys4(NR_ppoll, 0, 0, 0, 0);
	case 'n': {
		struct ts nap = {0, 12 * 1000 * 1000};
		while (sys4(NR_ppoll, 0, 0, (long)&nap, 0) == -4) /* EINTR: the rest is in nap */
			;
		die(0);
	}
	case 's':
		wait_eof();
		die(0);
	case 'w':
	case 'c':
		wait_eof();
		stamp(mode[0] == 'c');
		die(0);
	case 't':
		stamp(0);
		die(0);
	default:
		die(0);
	}
}
