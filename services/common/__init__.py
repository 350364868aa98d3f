"""Protocol machinery shared by every API service: hub auth, errors, DALI parameters, VOSI."""
