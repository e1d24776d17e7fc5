/*
 * confset.h - a key of the table (confkeys.c) and the setters that read a
 * key's value into its field, grouped by what the keys are about:
 * confset.c (kinds of value many keys share: durations, counts, paths, ...),
 * confsetexec.c (what a service runs and how), confsetlife.c (its
 * lifecycle: restart, stop, dependencies, readiness, health) and
 * confsetdaemon.c (keys of [evmon] alone). A setter reads v with a grammar
 * of confvalue.c, stores it in field (an offset of the key's struct) and
 * says what is wrong with it through conf_bad; it never stops the walk.
 *
 * A new key: its CK_ in confkeys.h, its row in confkeys.c and, when no
 * setter reads its kind of value yet, a setter in the file of its group.
 */
#ifndef EVMON_CONFSET_H
#define EVMON_CONFSET_H

#include "confkeys.h"

#include <stddef.h>

/* Which struct a key's field is in. */
enum where { IN_POLICY, IN_SERVICE, IN_CONFIG };
enum scope { S_SERVICE = 1, S_EVMON = 2, S_BOTH = 3 };

struct keydef;
typedef void (*key_setter)(struct conf_ctx *c, const struct keydef *k, const char *v, void *field);

struct keydef {
	const char *name;
	enum scope scope;
	enum where where;
	size_t off;	    /* of the field in its struct */
	key_setter set;
	unsigned long arg;  /* the setter's: a maximum, a minimum, or which stream */
	unsigned flag;	    /* EVM_SVC_* that says the policy field is set */
	const char *doc;
};

#define CONF_SETTER(name) \
	void name(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)

/* confset.c: values of a kind many keys share */
CONF_SETTER(conf_set_duration);
CONF_SETTER(conf_set_count);
CONF_SETTER(conf_set_positive);
CONF_SETTER(conf_set_bool);
CONF_SETTER(conf_set_period);
CONF_SETTER(conf_set_log_size);
CONF_SETTER(conf_set_buffer_size);
CONF_SETTER(conf_set_path);
CONF_SETTER(conf_set_name);
CONF_SETTER(conf_set_words);

/* confsetexec.c: what a service runs and how */
CONF_SETTER(conf_set_command);
CONF_SETTER(conf_set_environment);
CONF_SETTER(conf_set_umask);
CONF_SETTER(conf_set_output);
CONF_SETTER(conf_set_adjust);
CONF_SETTER(conf_set_rlimit);
CONF_SETTER(conf_set_limit);

/* confsetlife.c: its lifecycle (restart, stop, dependencies, readiness, health) */
CONF_SETTER(conf_set_restart);
CONF_SETTER(conf_set_codes);
CONF_SETTER(conf_set_signal);
CONF_SETTER(conf_set_kill_group);
CONF_SETTER(conf_set_kill_mode);
CONF_SETTER(conf_set_track);
CONF_SETTER(conf_set_deps);
CONF_SETTER(conf_set_essential);
CONF_SETTER(conf_set_ready);
CONF_SETTER(conf_set_health_action);
CONF_SETTER(conf_set_health_probe);

/* confsetdaemon.c: keys of [evmon] alone */
CONF_SETTER(conf_set_prefix);
CONF_SETTER(conf_set_listen);
CONF_SETTER(conf_set_cgroup_mode);

#endif
