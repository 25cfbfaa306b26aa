// Package usage renders what makuosan and msync say about their flags: the
// option tables of their help texts, and, from the same FlagSets and help
// texts, their manual pages and bash and zsh completions (Page), so none of
// them can drift from the flags the commands really parse.
package usage
