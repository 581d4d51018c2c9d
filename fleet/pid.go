package fleet

import "os"

var pid = os.Getpid()
