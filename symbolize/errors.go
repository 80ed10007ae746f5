package symbolize

import "errors"

var (
	// ErrAddressesHidden means the kernel hid its addresses: every address in
	// kallsyms reads 0. The kernel decides this when /proc/kallsyms is opened,
	// from kernel.kptr_restrict and the opener's CAP_SYSLOG.
	ErrAddressesHidden = errors.New("kernel addresses are hidden")

	// ErrMalformed means a kallsyms line could not be parsed. The wrapping
	// error names the line number and what was wrong with it.
	ErrMalformed = errors.New("malformed line")

	// ErrNoSymbols means the input held no usable text symbol (for example,
	// it was empty).
	ErrNoSymbols = errors.New("no text symbols")

	// ErrNotSupported means the operation does not exist on this platform.
	ErrNotSupported = errors.New("not supported on this platform")
)
