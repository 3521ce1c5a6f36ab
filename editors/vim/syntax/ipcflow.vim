" Vim syntax file
" Language: ipcflow (.ipcflow scripts: stages, typed edges between them)
" Stage commands are highlighted as bash (Vim's own sh.vim).
" Install: copy or link editors/vim/{syntax,ftdetect} into ~/.vim, or
"   set runtimepath+=/path/to/ipcflow/editors/vim

if exists('b:current_syntax')
  finish
endif

" Stage commands: Vim's shell syntax, in its bash dialect.
let s:is_bash = exists('b:is_bash')
let b:is_bash = 1
syn include @ipcflowShell syntax/sh.vim
unlet! b:current_syntax
if !s:is_bash
  unlet! b:is_bash
endif

syn case match

syn match   ipcflowComment   "\%(^\|\s\)\zs#.*$" contains=@Spell
syn match   ipcflowShebang   "\%1l^#!.*$"
syn match   ipcflowContinue  "\\$"

" $NAME and ${NAME...}: a param, env or given variable used in a value.
syn match   ipcflowParamUse  "\$[A-Za-z_][A-Za-z0-9_]*" contained
syn region  ipcflowParamUse  matchgroup=ipcflowParamUse start="\${" end="}" contained contains=ipcflowParamUse
syn region  ipcflowString    start=+"+ skip=+\\.+ end=+"+ contained contains=ipcflowParamUse
syn region  ipcflowString    start=+'+ end=+'+ contained

" param NAME = WORD, env NAME = WORD, sem NAME = COUNT
syn match   ipcflowDecl      "^\s*\zs\%(param\|env\)\>" nextgroup=ipcflowVarName skipwhite
syn match   ipcflowVarName   "[A-Za-z_][A-Za-z0-9_]*" contained nextgroup=ipcflowVarAssign skipwhite
syn match   ipcflowVarAssign "=" contained nextgroup=ipcflowValue skipwhite
syn match   ipcflowValue     "\%(\"[^\"]*\"\|'[^']*'\|[^[:space:]#\"']\)\+" contained contains=ipcflowString,ipcflowParamUse
syn match   ipcflowDecl      "^\s*\zssem\>" nextgroup=ipcflowSemName skipwhite
syn match   ipcflowSemName   "[A-Za-z_][A-Za-z0-9_]*" contained nextgroup=ipcflowSemAssign skipwhite
syn match   ipcflowSemAssign "=" contained nextgroup=ipcflowNumber skipwhite
syn match   ipcflowNumber    "\<[0-9]\+\>" contained

" stage NAME [N] (PORTS) CLAUSES = COMMAND: a region from the keyword to
" the end of the command. The command is shell, from the first '=' (not
" a limit's memory=64MiB) to the end of the line, and on over the next
" lines while it ends in |, &&, || or \, or while one of sh.vim's regions
" (a quote, a block, a here-document) is open: neither region keeps its
" end, so an open shell region carries them on. A line that starts a
" declaration ends them too (after a here-document, say).
syn region  ipcflowStage     start="^\s*stage\>" end="\%(|\|&&\|\\\)\@<!$\|^\%(\s*\%(stage\|param\|env\|sem\)\>\)\@=" contains=ipcflowStageKw,ipcflowStageName,ipcflowReplicas,ipcflowPorts,ipcflowClause,ipcflowLimit,ipcflowString,ipcflowParamUse,ipcflowCommand
syn match   ipcflowStageKw   "^\s*\zsstage\>" contained
syn match   ipcflowStageName "\%(^\s*stage\s\+\)\@<=[A-Za-z_][A-Za-z0-9_]*" contained
syn region  ipcflowReplicas  matchgroup=ipcflowDelim start="\[" end="\]" contained contains=ipcflowNumber,ipcflowParamUse,ipcflowAuto
syn keyword ipcflowAuto      auto contained
syn region  ipcflowPorts     matchgroup=ipcflowDelim start="(" end=")" contained contains=ipcflowDirection,ipcflowPortName
syn keyword ipcflowDirection in out contained
syn match   ipcflowPortName  "\%(\<\%(in\|out\)\s\+\)\@<=[A-Za-z_][A-Za-z0-9_]*" contained
syn keyword ipcflowClause    uses after dir native unordered merge on restart max within backoff limit contained
syn match   ipcflowLimit     "\<\%(memory\|cpu\|pids\|files\)=[^[:space:],]\+" contained
syn region  ipcflowCommand   matchgroup=ipcflowAssign start="\%(\<\%(memory\|cpu\|pids\|files\)\)\@<!=" end="\%(|\|&&\|\\\)\@<!$\|^\%(\s*\%(stage\|param\|env\|sem\)\>\)\@=" contained contains=@ipcflowShell

" Edges: ENDS ARROW ENDS ...
syn match   ipcflowArrow     "->"
syn region  ipcflowEdgeType  matchgroup=ipcflowArrow start="-\[" end="\]->" oneline contains=ipcflowType,ipcflowSocket,ipcflowOption,ipcflowOptValue,ipcflowSize,ipcflowString,ipcflowParamUse
syn keyword ipcflowType      pipe fifo mq shm mmap socket contained
syn keyword ipcflowSocket    unix tcp udp contained
syn match   ipcflowOption    "\<[A-Za-z_][A-Za-z0-9_]*\ze\s*=" contained
" An option's value: a size when it is one whole, else a word.
syn match   ipcflowOptValue  "\%(=\s*\)\@<=[^[:space:]\]\"']\+" contained contains=ipcflowParamUse
syn match   ipcflowSize      "\%(=\s*\)\@<=[0-9]\+\%(KiB\|MiB\|GiB\|K\|M\|G\)\=\ze\%(\s\|\]\)" contained
syn keyword ipcflowStream    stdin stdout stderr
syn match   ipcflowPortRef   "\<[A-Za-z_][A-Za-z0-9_]*\.\zs[A-Za-z_][A-Za-z0-9_]*\>"
syn match   ipcflowDelim     "[{},]"

hi def link ipcflowShebang   PreProc
hi def link ipcflowComment   Comment
hi def link ipcflowContinue  Special
hi def link ipcflowDecl      Keyword
hi def link ipcflowStageKw   Keyword
hi def link ipcflowVarName   Identifier
hi def link ipcflowSemName   Identifier
hi def link ipcflowStageName Function
hi def link ipcflowVarAssign Operator
hi def link ipcflowSemAssign Operator
hi def link ipcflowAssign    Operator
hi def link ipcflowValue     String
hi def link ipcflowString    String
hi def link ipcflowParamUse  Identifier
hi def link ipcflowNumber    Number
hi def link ipcflowAuto      Constant
hi def link ipcflowDirection StorageClass
hi def link ipcflowPortName  Identifier
hi def link ipcflowPortRef   Identifier
hi def link ipcflowClause    Statement
hi def link ipcflowLimit     Constant
hi def link ipcflowArrow     Operator
hi def link ipcflowType      Type
hi def link ipcflowSocket    Type
hi def link ipcflowOption    Identifier
hi def link ipcflowSize      Number
hi def link ipcflowOptValue  String
hi def link ipcflowStream    Constant
hi def link ipcflowDelim     Delimiter

let b:current_syntax = 'ipcflow'
