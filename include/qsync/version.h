/* libqsync's version. CMake reads these three lines; keep their shape. */
#ifndef QSYNC_VERSION_H
#define QSYNC_VERSION_H

#define QSYNC_VERSION_MAJOR 0
#define QSYNC_VERSION_MINOR 4
#define QSYNC_VERSION_PATCH 0

#define QSYNC_VERSION_HEX \
    ((QSYNC_VERSION_MAJOR << 16) | (QSYNC_VERSION_MINOR << 8) | QSYNC_VERSION_PATCH)

#endif
