// Package usage renders the option tables of makuosan's and msync's help
// texts, so both commands present flags the same way.
package usage
