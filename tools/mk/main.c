/* mk — the megakernel command-line tool: git-style subcommands. */
#include "cli.h"
#include "mk/mk.h"

#include <stdio.h>
#include <string.h>

static const struct mk_cmd commands[] = {
    {"info", "describe a checkpoint directory (sizes, parameters, bytes per step)", mk_cmd_info},
    {"tokenize", "text to token ids with a tokenizer.json (plain or chat)", mk_cmd_tokenize},
    {"detokenize", "token ids to text", mk_cmd_detokenize},
    {"generate", "generate text from a checkpoint on the CPU reference or the GPU", mk_cmd_generate},
    {"plan", "compile the megakernel plan for a config and report it", mk_cmd_plan},
    {"bench", "benchmark decode and prefill", mk_cmd_bench},
    {"serve", "OpenAI-compatible HTTP server", mk_cmd_serve},
    {"synth", "write a random-weight checkpoint of a real architecture", mk_cmd_synth},
    {"gpu", "print the CUDA device that would be used (exit 3 if none)", mk_cmd_gpu},
};
enum { N_COMMANDS = sizeof commands / sizeof commands[0] };

static void usage(FILE *f)
{
    fprintf(f, "usage: mk <command> [options]   (mk <command> --help for its options)\n\n");
    for (int i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nmk %s\n", mk_version());
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return MK_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return MK_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("mk %s\n", mk_version());
        return MK_EXIT_OK;
    }
    for (int i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "mk: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return MK_EXIT_USAGE;
}
