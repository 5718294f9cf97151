module parsecheck

go 1.19
