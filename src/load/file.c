/* Reading small files whole (configs, indexes, tokenizers). */
#include "mk/load.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum mk_status mk_read_file(const char *path, size_t limit, char **out, size_t *out_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return mk_error(MK_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    enum mk_status s = MK_OK;
    char *buf = NULL;
    if (fstat(fd, &st) != 0)
        s = mk_error(MK_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        s = mk_error(MK_ERR_IO, "%s: not a regular file", path);
    else if ((uint64_t)st.st_size > limit)
        s = mk_error(MK_ERR_LIMIT, "%s: %lld bytes exceeds the limit of %zu bytes", path,
                     (long long)st.st_size, limit);
    else if (!(buf = malloc((size_t)st.st_size + 1)))
        s = mk_error(MK_ERR_NOMEM, "%s: out of memory for %lld bytes", path, (long long)st.st_size);
    size_t got = 0;
    while (s == MK_OK && got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) s = mk_error(MK_ERR_IO, "%s: read failed: %s", path, strerror(errno));
        else if (r == 0) s = mk_error(MK_ERR_IO, "%s: file shrank while being read", path);
        else got += (size_t)r;
    }
    close(fd);
    if (s != MK_OK) {
        free(buf);
        return s;
    }
    buf[got] = '\0';
    *out = buf;
    *out_len = got;
    return MK_OK;
}
