/*
 * Messages to QEMU's stderr. Every line starts with "qsync-plugin: " so a
 * user (or the library, which keeps the tail of QEMU's stderr) can tell
 * ours from QEMU's. qemu_plugin_outs is no use here: it prints only under
 * "-d plugin".
 */
#ifndef QSYNC_PLUGIN_LOG_H
#define QSYNC_PLUGIN_LOG_H

/* Prints one line, prefixed and newline-terminated, in a single write so
 * lines from different threads do not interleave. Any thread. */
void qsync__log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
