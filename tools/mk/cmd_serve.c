/* mk serve — arrives with issue 11; until then it says so and fails. */
#include "cli.h"

#include <stdio.h>

int mk_cmd_serve(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("usage: mk serve ...\n  (arrives with issue 11)\n");
        return MK_EXIT_OK;
    }
    for (int i = 1; i < argc; i++)
        if (argv[i][0] == '-' && argv[i][1] == '-') {
            fprintf(stderr, "mk %s: unknown option '%s'\n", argv[0], argv[i]);
            return MK_EXIT_USAGE;
        }
    fprintf(stderr, "mk serve: not in this build yet (issue 11)\n");
    return MK_EXIT_FAIL;
}
