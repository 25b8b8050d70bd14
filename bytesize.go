package yolk

import "github.com/yolkgo/yolk/internal/cli"

// ByteSize is a size in bytes for an application's config struct (App.Config):
// a byte count, or a number with KiB, MiB or GiB (powers of 1024), up to 1 TiB,
// as "32MiB" or "1048576". Its String writes it back in the largest unit that
// divides it. It is the type of the runtime's own sizes (YOLK_WORKER_MAX_RSS).
type ByteSize = cli.ByteSize
