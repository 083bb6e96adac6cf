/* mk plan — arrives with issue 6; until then it says so and fails. */
#include "cli.h"

#include <stdio.h>

int mk_cmd_plan(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("usage: mk plan ...\n  (arrives with issue 6)\n");
        return MK_EXIT_OK;
    }
    for (int i = 1; i < argc; i++)
        if (argv[i][0] == '-' && argv[i][1] == '-') {
            fprintf(stderr, "mk %s: unknown option '%s'\n", argv[0], argv[i]);
            return MK_EXIT_USAGE;
        }
    fprintf(stderr, "mk plan: not in this build yet (issue 6)\n");
    return MK_EXIT_FAIL;
}
