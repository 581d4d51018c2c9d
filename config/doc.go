// Package config turns the environment and command-line flags into a
// validated Config (CONTRACT §2). Every bad setting is reported as one line
// naming the variable and the problem; secrets never appear in messages.
package config
