package bench

import "matrixhs/clientapi/accounts"

func accountsRegistration(name string) accounts.Registration {
	return accounts.Registration{Localpart: name, Password: "pw"}
}
