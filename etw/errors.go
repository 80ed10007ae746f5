package etw

import "errors"

var (
	// ErrTruncated means a payload was shorter than its event's layout
	// needs. The wrapping error names the event and both lengths.
	ErrTruncated = errors.New("truncated payload")

	// ErrUnknownOpcode means a decoder was given an opcode that its event
	// class does not define (or that kmemprof does not decode).
	ErrUnknownOpcode = errors.New("unknown opcode")

	// ErrPointerSize means a decoder was asked for a pointer size other than
	// 4 or 8 bytes.
	ErrPointerSize = errors.New("pointer size must be 4 or 8")

	// ErrMalformed means a payload had a length its layout cannot have, such
	// as a stack whose frames are not a whole number of pointers, or more
	// frames than the kernel ever logs.
	ErrMalformed = errors.New("malformed payload")

	// ErrBadTag means a pool tag given by the user was empty, longer than
	// four bytes, or used a bad \xNN escape.
	ErrBadTag = errors.New("bad pool tag")

	// ErrBadReplay means a replay stream's framing was broken: wrong magic,
	// or a record cut short. Payloads that fail to decode are not framing
	// errors; they are counted by the Matcher.
	ErrBadReplay = errors.New("bad replay stream")
)
