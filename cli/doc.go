// Package cli is pgstripe's command line (CONTRACT §2): it parses the
// subcommand and its flags, loads the configuration and runs the subcommand.
// Errors end up as one line on stderr and a non-zero exit code.
package cli
