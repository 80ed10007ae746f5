package symbolize

import (
	"fmt"
	"os"
)

// LoadKallsyms reads and parses /proc/kallsyms. It returns an error wrapping
// the open or read error ("reading /proc/kallsyms: ..."), or one of the
// [ParseKallsyms] errors: in particular [ErrAddressesHidden] when the caller
// lacks the privilege to see kernel addresses.
func LoadKallsyms() (*Kallsyms, error) {
	f, err := os.Open(kallsymsPath)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", kallsymsPath, err)
	}
	defer f.Close()
	k, err := ParseKallsyms(f)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", kallsymsPath, err)
	}
	return k, nil
}
