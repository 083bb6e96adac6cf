/* Shared pieces of the `mk` subcommands: the command table and argument parsing.
 * Exit codes of every subcommand: 0 success, 1 failure (bad input file, runtime error;
 * message on stderr), 2 bad arguments (usage on stderr), 3 no GPU where one is needed. */
#ifndef MK_CLI_H
#define MK_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { MK_EXIT_OK = 0, MK_EXIT_FAIL = 1, MK_EXIT_USAGE = 2, MK_EXIT_NO_GPU = 3 };

struct mk_cmd {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
};

int mk_cmd_info(int argc, char **argv);
int mk_cmd_tokenize(int argc, char **argv);
int mk_cmd_detokenize(int argc, char **argv);
int mk_cmd_generate(int argc, char **argv);
int mk_cmd_plan(int argc, char **argv);
int mk_cmd_bench(int argc, char **argv);
int mk_cmd_serve(int argc, char **argv);
int mk_cmd_synth(int argc, char **argv);
int mk_cmd_gpu(int argc, char **argv);

/* True when argv holds -h or --help. */
bool cli_wants_help(int argc, char **argv);

/* Parse a whole decimal/float argument; on failure print
 * "mk CMD: --FLAG expects ..., got 'X'" to stderr and return false. */
bool cli_int(const char *cmd, const char *flag, const char *s, long lo, long hi, long *out);
bool cli_float(const char *cmd, const char *flag, const char *s, double lo, double hi, double *out);

/* The value after a flag at argv[*i]; advances *i. Prints an error and returns NULL when
 * the flag is last. */
const char *cli_value(const char *cmd, int argc, char **argv, int *i);

/* All of stdin in a NUL-terminated heap buffer (*len bytes, may be NULL); NULL when out
 * of memory. */
char *cli_read_stdin(size_t *len);

/* Print "mk CMD: MSG" and the usage text to stderr; returns MK_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *usage, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
