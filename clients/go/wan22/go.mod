module wan22serve/clients/go/wan22

go 1.19
