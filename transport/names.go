package transport

import "fmt"

// CanonicalUser returns the canonical form of a user name, protocol.md §5.3:
// 1–32 characters of a-z 0-9 _ . -, with A-Z folded to lower case. Only
// ASCII letters fold, so look-alikes such as U+212A KELVIN SIGN are refused
// rather than silently becoming "k".
func CanonicalUser(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("user name is empty")
	}
	if len(name) > MaxUserName {
		return "", fmt.Errorf("user name is longer than %d characters", MaxUserName)
	}
	b := []byte(name)
	for i, c := range b {
		switch {
		case 'A' <= c && c <= 'Z':
			b[i] = c + 'a' - 'A'
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '_', c == '.', c == '-':
		default:
			return "", fmt.Errorf("user name %q may hold only a-z, 0-9, '_', '.' and '-'", name)
		}
	}
	return string(b), nil
}
