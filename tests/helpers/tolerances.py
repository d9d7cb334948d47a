"""Every numerical tolerance the tests use, in one place, with its reason."""

# Finite differences in float64 with step 1e-6 (central) leave ~1e-9 truncation error on
# smooth functions; 1e-6 relative leaves room for sums over many terms.
GRADCHECK_RTOL = 1e-6
GRADCHECK_ATOL = 1e-8
GRADCHECK_EPS = 1e-6

# Parity with PyTorch on identical weights (the contract).
PARITY_ATOL_FLOAT64 = 1e-5
PARITY_RTOL_FLOAT32 = 1e-4
PARITY_ATOL_FLOAT32 = 1e-5

# Accelerated kernel against the NumPy reference on the same inputs.
BACKEND_RTOL_FLOAT64 = 1e-10
BACKEND_ATOL_FLOAT64 = 1e-12
BACKEND_RTOL_FLOAT32 = 1e-5
BACKEND_ATOL_FLOAT32 = 1e-5
