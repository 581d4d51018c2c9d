package proxy

import "fmt"

var fmtSprintf = fmt.Sprintf
