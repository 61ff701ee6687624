//! The customer registry: accounts, partners and their managed customers.
