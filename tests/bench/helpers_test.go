package bench

import "matrixhs/internal/accounts"

func accountsRegistration(name string) accounts.Registration {
	return accounts.Registration{Localpart: name, Password: "pw"}
}
