module github.com/skiff-io/skiff/pkg/startpages

go 1.26.0
